"""Issue #15: `rvar compare` keeps per-image outputs (images/ + images.json) and the report's HTML shows them in a
self-contained before/after viewer, with the quality ladder when compare wrote one."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from rvar.cli import main
from rvar.demo.report import write_report
from rvar.demo.viewer import add_viewer
from test_compare import checkpoints  # noqa: F401 - the module-scoped fixture: tiny restorer, LDM and NAFNet


@pytest.fixture(scope="module")
def compared(checkpoints, tmp_path_factory, rvar_data_home):  # noqa: F811
    out = tmp_path_factory.mktemp("demo")
    code = main(["compare", *checkpoints, "--data", "embedded-val", "--degradations", "rain,low_light",
                 "--max-images", "1", "--size", "64", "--steps", "2", "--no-mlflow", "-o", str(out / "compare")])
    assert code == 0
    return out


@pytest.mark.slow
def test_compare_saves_per_image_outputs_with_an_index(compared):
    index = json.loads((compared / "compare" / "images.json").read_text())
    assert index["columns"] == ["degraded input", "restorevar", "ldm", "nafnet", "clean"]
    assert sorted(s["degradation"] for s in index["samples"]) == ["low_light", "rain"]
    for sample in index["samples"]:
        assert list(sample["files"]) == index["columns"]
        assert all((compared / "compare" / f).is_file() for f in sample["files"].values())
        assert set(sample["psnr"]) == {"degraded input", "restorevar", "ldm", "nafnet"}


def _report(out: Path, rvar_data_home: Path) -> str:
    write_report(out, out / "compare", [], minutes=1, total_seconds=60, compare_seconds=5, data_root=rvar_data_home)
    return (out / "report.html").read_text()


@pytest.mark.slow
def test_report_has_a_self_contained_slider_and_the_ladder(compared, rvar_data_home):
    page = _report(compared, rvar_data_home)
    assert "<h2>Before / after</h2>" in page and page.count('class="rv-card"') == 2
    assert "http://" not in page and "https://" not in page and 'src="images/' not in page  # works offline
    data = json.loads(page.split("<script type='application/json' id='rv-data'>")[1].split("</script>")[0])
    assert all(uri.startswith("data:image/png;base64,") for s in data["samples"] for uri in s["uris"].values())
    # compare scored the RestoreVAR checkpoint's ladder; the report shows each rung
    assert "Quality ladder" in page
    for rung in ("VQ round trip (clean)", "continuous round trip (clean)", "prior only", "+ refiner"):
        assert f"<td>{rung}</td>" in page, rung


@pytest.mark.slow
def test_report_states_the_precision_compare_ran_in(compared, rvar_data_home):
    """The report reads the precision from compare's own results.md (this one ran in the default fp32), not from
    what the demo would have asked for."""
    _report(compared, rvar_data_home)
    summary = (compared / "report.md").read_text()
    assert "with `rvar compare`, every model in fp32." in summary and "bf16" not in summary


def test_viewer_from_an_index_alone(tmp_path):
    """The viewer needs only images.json and its PNGs: no report, no models."""
    columns = ["degraded input", "model", "clean"]
    files = {}
    for number, column in enumerate(columns):
        Image.new("RGB", (8, 8), (number * 100, 0, 0)).save(tmp_path / f"{number}.png")
        files[column] = f"{number}.png"
    index = {"columns": columns, "samples": [{"image": "cat", "degradation": "haze", "files": files,
                                              "psnr": {"degraded input": 12.0, "model": 15.5}}]}
    (tmp_path / "images.json").write_text(json.dumps(index))
    page = add_viewer("<html><body><h2>Quality versus time</h2></body></html>", tmp_path)
    assert page.index("Before / after") < page.index("Quality versus time")
    assert page.count("data:image/png;base64,") == 3 and "<option selected>model</option>" in page
    assert add_viewer("<html><body></body></html>", tmp_path / "missing") == "<html><body></body></html>"
