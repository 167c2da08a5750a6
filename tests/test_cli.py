"""The command line as a user meets it: real commands, real child processes."""

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def cli(*args):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_designs_list_as_a_script(tmp_path):
    done = subprocess.run([sys.executable, "cli.py", "designs", "list", "--run-dir", str(tmp_path / "r")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for expected in ("gpt2", "llama", "transformer", "2302.13971", "3,159,296"):
        assert expected in done.stdout
    assert (tmp_path / "r" / "archive.db").exists()


def test_designs_show_sizes_and_counts_flops():
    code, out = cli("designs", "show", "llama", "--target", "500000", "--seq-len", "64")
    assert code == 0, out
    assert "LlamaBlock" in out and "SwiGLU" in out and "fingerprint:" in out
    assert "500,000" in out and "144" in out and "%" in out


def test_designs_export_writes_a_standalone_module(tmp_path):
    out_file = tmp_path / "exported" / "gpt2.py"
    code, out = cli("designs", "export", "gpt2", "--out", str(out_file))
    assert code == 0 and out_file.exists() and not out_file.with_name("gpt2.py.partial").exists()
    done = subprocess.run([sys.executable, "-I", str(out_file)], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert done.returncode == 0 and "gpt2:" in done.stdout


def test_unreachable_size_target_is_one_clear_line():
    code, out = cli("designs", "show", "gpt2", "--target", "1000")
    assert code == 2 and out.strip().count("\n") == 0
    assert out.startswith("error: gpt2: no (d_model, n_block) gives 1,000 non-embedding parameters within 5%")


def test_unknown_design_is_one_clear_line():
    code, out = cli("designs", "show", "gtp2")
    assert code == 2
    assert out.strip().count("\n") == 0
    assert "no design named 'gtp2'" in out and "gpt2" in out


GENESYS_EXAMPLE = ROOT / "tests" / "data" / "genesys" / "tiny_gpt.json"


def test_import_a_genesys_design_then_use_it_by_name(tmp_path):
    code, out = cli("designs", "import", str(GENESYS_EXAMPLE))
    assert code == 0, out
    name = out.split()[1]
    assert "imported" in out and "non-embedding params" in out
    assert cli("designs", "import", str(GENESYS_EXAMPLE))[0] == 0  # again: nothing changes
    code, out = cli("designs", "show", name, "--target", "500000", "--seq-len", "32")
    assert code == 0 and "TinyBlock" in out and "RotaryEmb" in out
    code, out = cli("designs", "list")
    assert code == 0 and name in out and "imported" in out
    code, _ = cli("designs", "export", name, "--out", str(tmp_path / "tiny.py"))
    assert code == 0 and "class TinyBlock(GAUBase)" in (tmp_path / "tiny.py").read_text()


def test_import_this_projects_tree_json(tmp_path):
    from designs.seeds import load_seed

    tree = load_seed("llama")
    tree.name = "my_llama"
    path = tmp_path / "my_llama.json"
    path.write_text(tree.to_json())
    code, out = cli("designs", "import", str(path))
    assert code == 0 and out.startswith("imported my_llama (4 units, 3,164,416 non-embedding params"), out


def test_bad_imports_fail_cleanly_and_write_nothing(tmp_path):
    from designs.archive import Archive

    broken = tmp_path / "broken.json"
    broken.write_text(GENESYS_EXAMPLE.read_text().replace("def _forward(self, X", "def _forward(self X", 1))
    not_json = tmp_path / "not.json"
    not_json.write_text("{ nope")
    bad_tree = tmp_path / "bad_tree.json"
    bad_tree.write_text('{"format": "genesys.unittree/1", "name": "x", "root": "A", "units": {"A": {"code": 1}}}')
    for path, message in ((broken, "does not parse: line"), (not_json, "not.json"),
                          (bad_tree, "bad_tree.json.units.A.code: expected str"),
                          (tmp_path / "missing.json", "missing.json")):
        code, out = cli("designs", "import", str(path))
        assert code == 2 and out.startswith("error: ") and message in out, out
        assert out.strip().count("\n") == 0
    with Archive.open(tmp_path / "run") as archive:
        assert all(r.mode == "seed" for r in archive.list_designs())


def test_check_a_seed_passes():
    code, out = cli("check", "gpt2", "--no-efficiency")
    assert code == 0, out
    assert "PASSED" in out and "causality_max_rel_change: 0" in out and "sandbox: network none" in out


def test_check_a_broken_tree_json_fails_with_the_unit(tmp_path):
    sys.path.insert(0, str(ROOT / "tests"))
    import hostile

    path = tmp_path / "leaky.json"
    path.write_text(hostile.tree("non_causal").to_json())
    code, out = cli("check", str(path), "--no-efficiency", "--json")
    assert code == 1
    report = __import__("json").loads(out)
    assert not report["ok"] and {f["check"] for f in report["findings"]} >= {"causality", "causality.gradient"}
    assert next(f for f in report["findings"] if f["check"] == "causality")["unit"] == "MHA"


def test_check_an_exported_module(tmp_path):
    exported = tmp_path / "llama.py"
    assert cli("designs", "export", "llama", "--out", str(exported))[0] == 0
    code, out = cli("check", str(exported), "--no-efficiency")
    assert code == 0 and "PASSED" in out


def test_check_unknown_target_is_one_line():
    result = runner.invoke(app, ["check", "gpt3"])
    assert result.exit_code == 2 and result.output.count("error:") == 1


def test_ladder_show():
    code, out = cli("ladder", "show", "gpu")
    assert code == 0 and "350M" in out and "blimp" in out
    result = runner.invoke(app, ["ladder", "show", "tpu"])
    assert result.exit_code == 2 and "ladders: cpu, gpu" in result.output
