"""panfrost on rig's Mali model, end to end (arm64 debian:6.1 under TCG, about 3 minutes a
run with the kernel, the series build and the image cached):

- two of the panfrost test series against their expected.toml (the purge underflow's
  WARNING in its subtest; the harmless one clean). The other two are caught the same way;
  their commands are in their expected.toml (kept out of here for CI's time):
      rig run --arch arm64 --gpu mali --kernel debian:6.1 --plan panfrost --no-base \\
          --series tests/data/series/panfrost-heap-leak
      rig run ... --series tests/data/series/panfrost-shrinker-lockdep
- an injected GPU hang (`--gpu-fault hang-jobs=1`): reported as a hang, panfrost's
  timeout and reset in the subtest whose job hung, and the subtests after it pass.
"""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.slow.test_run import rig_run

REPO = Path(__file__).resolve().parent.parent.parent
SERIES = REPO / "tests" / "data" / "series"
PLANS = REPO / "tests" / "data" / "plans"
MALI = ("--arch", "arm64", "--gpu", "mali", "--kernel", "debian:6.1")
# cold: the arm64 kernel, the series' build, rig's QEMU and the arm64 image
COLD_TIMEOUT_S = 5400


def _expected(series: str) -> dict[str, Any]:
    return tomllib.loads((SERIES / series / "expected.toml").read_text())


@pytest.mark.parametrize("series", ["panfrost-purge-underflow", "panfrost-harmless"])
def test_panfrost_series_gives_what_its_expected_toml_says(series: str, tmp_path: Path) -> None:
    expected = _expected(series)
    out = tmp_path / series
    done, data = rig_run(*MALI, "--plan", "panfrost", "--series", str(SERIES / series), "--no-base",
                         out=out, timeout=COLD_TIMEOUT_S)
    assert done.returncode == expected["exit_code"], done.stdout[-3000:] + done.stderr[-3000:]
    titles = [f["title"] for f in data["findings"]]
    for want in expected.get("finding", []):
        found = [f for f in data["findings"] if f["title"] == want["title"]]
        assert found, (want["title"], titles)
        assert (found[0]["kind"], found[0]["status"]) == (want["kind"], "new")
        assert fnmatch.fnmatchcase(found[0]["test"], want.get("test_pattern", want["test"])), found[0]["test"]
        if "lock_chain" in want:
            assert found[0]["lock_chain"] == want["lock_chain"]
    if expected["exit_code"] == 0:
        assert titles == [] and data["verdict"]["unexpected_failures"] == []
    # rig-panfrost ran in full: IGT's 16 and rig's own
    assert sum(t["name"].startswith("ktap:panfrost_") for t in data["tests"]) >= 24


def test_an_injected_hang_is_reported_and_the_gpu_works_after_the_reset(tmp_path: Path) -> None:
    out = tmp_path / "hang"
    done, data = rig_run(*MALI, "--plan", str(PLANS / "panfrost-injected-hang.toml"), "--pressure", "none",
                         "--gpu-fault", "hang-jobs=1", out=out, timeout=COLD_TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    gpu = data["gpu"]
    assert gpu["injected"] == {"hang-jobs": 1} and gpu["hangs_injected"] == 1
    # the model hung one job and has no hang left to inject
    assert gpu["counters"]["jobs-hung"] == 1 and gpu["counters"]["inject-hang-jobs"] == 0
    hung = "ktap:panfrost_rig.madvise-retained"
    timeouts = [e for e in gpu["events"] if e["kind"] == "timeout"]
    assert timeouts and timeouts[0]["test"] == hung, gpu["events"]
    assert gpu["timeouts"] >= 1 and gpu["resets"] >= 1
    assert gpu["counters"]["soft-resets"] + gpu["counters"]["hard-resets"] >= gpu["resets"]
    tests = {t["name"]: t for t in data["tests"]}
    assert tests[hung]["status"] == "expected"
    for after in ("ktap:panfrost_rig.as-steal", "ktap:panfrost_rig.prime-import-job",
                  "ktap:panfrost_rig.endless-chain-timeout-reset"):
        assert tests[after]["result"] == "pass", tests[after]
    md = (out / "report.md").read_text()
    assert "GPU events:" in md and "injected: hang-jobs=1" in md
    assert f"| {hung} | timeout | panfrost " in md
