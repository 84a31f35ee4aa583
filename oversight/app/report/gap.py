"""The report's capability-gap section (oversight.app.gap): the ratings and curves table and the
plot, when the sweep directory holds a capability-gap analysis (gap.json, gap.png); else nothing."""

from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path


def gap_section(directory: str | Path) -> str:
    directory = Path(directory)
    if not (directory / "gap.json").exists():
        return ""
    result = json.loads((directory / "gap.json").read_text())
    ratings = "".join(f"<tr><td>{escape(r['role'])}</td><td>{escape(r['player'])}</td><td>{r['elo']:.0f}</td>"
                      f"<td>[{r['low']:.0f}, {r['high']:.0f}]</td></tr>" for r in result["ratings"])
    curves = "".join(
        f"<tr><td>{escape(c['protocol'])}</td><td>{c['a']:+.2f} [{c['a_ci'][0]:+.2f}, {c['a_ci'][1]:+.2f}]</td>"
        f"<td>{c['b']:+.2f} [{c['b_ci'][0]:+.2f}, {c['b_ci'][1]:+.2f}]</td><td>{c['success_at_0']:.3f}</td>"
        f"<td>{c['nso_one_step']:.3f} [{c['nso_one_step_ci'][0]:.3f}, {c['nso_one_step_ci'][1]:.3f}]</td>"
        f"<td>{c['nso_steps']}</td><td>{c['nso_best']:.3f} [{c['nso_best_ci'][0]:.3f}, {c['nso_best_ci'][1]:.3f}]</td></tr>"
        for c in result["curves"])
    image = ""
    if (directory / "gap.png").exists():
        data = base64.b64encode((directory / "gap.png").read_bytes()).decode()
        image = f'<figure><img alt="judge success against the rating gap" src="data:image/png;base64,{data}">' \
                "<figcaption>Judge success against the rating gap (arguer - judge, Elo) per protocol: cells " \
                "(judge x arguer) with 95% CIs, the fitted curve and its bootstrap band</figcaption></figure>"
    return f"""<h2>Capability gap</h2>
<p class=muted>{len(result['judges'])} judges x {len(result['arguers'])} arguers on {result['questions']} questions
(oversight.app.gap): arguers rated by cross-play, judges by how often they reach the truth against them; 95%
intervals from {result['resamples']} question-clustered bootstrap resamples. Nested oversight over a total gap of
{result['curves'][0]['nso_gap'] if result['curves'] else 400:.0f} Elo (Engels et al. 2025). Grid of every judge on
every transcript: grid.md.</p>
<table><thead><tr><th>role</th><th>player</th><th>rating (Elo)</th><th>95% CI</th></tr></thead><tbody>{ratings}</tbody></table>
<table><thead><tr><th>protocol</th><th>a</th><th>b</th><th>success at gap 0</th><th>one step</th><th>best steps</th>
<th>nested success</th></tr></thead><tbody>{curves}</tbody></table>
<section class="plots">{image}</section>
"""
