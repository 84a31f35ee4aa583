"""`oversight-agree`: verdict agreement between two sweeps of the same jobs (how a backend change is
checked against the hf backend), on real jobs of the tiny model."""

from __future__ import annotations

import json

from oversight.app.agree import agreement, main
from oversight.app.run import run_job
from tests.helpers import job_config


def test_identical_sweeps_agree_and_a_changed_verdict_is_counted(tiny_model_cfg, tmp_path, capsys):
    for sweep in ("a", "b"):
        for protocol in ("direct", "direct_passage"):
            cfg = job_config(tiny_model_cfg, {"name": protocol}, n=4)
            cfg["cache"]["path"] = str(tmp_path / "calls.sqlite")
            run_job(cfg, tmp_path / sweep / protocol)
    rows = agreement(tmp_path / "a", tmp_path / "b")
    assert [r["protocol"] for r in rows] == ["direct", "direct_passage"]
    assert all(r["questions"] == 4 and r["judgments"] == 4 and r["verdict_agreement"] == 1.0 for r in rows)
    assert all(r["max_abs_dp"] == 0.0 and r["accuracy_a"] == r["accuracy_b"] for r in rows)
    # flip one judgment's verdict in B: one of four disagrees, and its probabilities moved
    path = tmp_path / "b" / "direct" / "records.jsonl"
    lines = path.read_text().splitlines()
    record = json.loads(lines[0])
    judgment = record["judgments"][0]
    judgment["chosen"] = 1 - judgment["chosen"]
    judgment["p"] = [judgment["p"][1], judgment["p"][0]]
    lines[0] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")
    direct = agreement(tmp_path / "a", tmp_path / "b")[0]
    assert direct["verdict_agreement"] == 0.75
    assert direct["max_abs_dp"] == abs(judgment["p"][0] - judgment["p"][1])
    assert main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert "0.7500" in capsys.readouterr().out
    assert main([str(tmp_path / "a"), str(tmp_path / "nowhere")]) == 2
    assert "no such directory" in capsys.readouterr().err
