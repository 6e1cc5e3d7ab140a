"""Viewer speed, measured in Chromium on demo data, against a naive baseline in the same run.

Aims (issue 2): opening a case < 2 s, showing a new slice < 300 ms.

Browser part: a Streamlit server over a demo store (a fresh 4-patient store unless
``--data-dir`` names one), Debian's Chromium through Playwright. A case open is timed
from the click on "Open in viewer" until the figure is drawn and the app is idle: first
in a fresh server and browser, then for each other case (its images not yet cached),
then again for a case already seen. Slice and frame changes are timed inside the page
(performance.now(), mutation observers) from the key press until the script has
finished and the figure is redrawn. Engine part (the baseline): for one slice change, our plane sampling
(:func:`core.imaging.planes.sample_plane`) against resampling the whole PET frame onto
the MRI grid with SimpleITK first, which is what a viewer without plane sampling does.

Usage: ``python benchmarks/viewer.py [--data-dir DIR] [--repeats N]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.browser import CHROMIUM, CHROMIUM_ARGS, IDLE, start_server  # noqa: E402
from tests.demo_store import build_demo_store, store_env  # noqa: E402


def _summary(name: str, times_s: list[float], aim_s: float) -> str:
    ms = [1000 * t for t in times_s]
    med = statistics.median(ms)
    p90 = sorted(ms)[max(0, int(round(0.9 * len(ms))) - 1)]
    verdict = "meets" if med < 1000 * aim_s else "MISSES"
    return f"{name:28s} median {med:8.1f} ms   p90 {p90:8.1f} ms   n={len(ms):3d}   aim < {1000 * aim_s:.0f} ms ({verdict})"


_OBSERVE = """() => {
  window.__tb = [];
  const app = document.querySelector("[data-testid='stApp']");
  new MutationObserver(() => window.__tb.push(['state', app.getAttribute('data-test-script-state'), performance.now()]))
    .observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
  new MutationObserver(() => window.__tb.push(['chart', '', performance.now()]))
    .observe(document.querySelector("[data-testid='stPlotlyChart']"),
             {subtree: true, childList: true, attributes: true, characterData: true});
}"""


def _in_page_latency(page, slider) -> float:
    """Seconds from a key press on ``slider`` until the script has finished and the figure is redrawn.

    Measured inside the page (performance.now()) by mutation observers, so Playwright's own
    round trips do not count.
    """
    page.evaluate("() => { window.__tb = []; }")
    slider.focus()
    t0 = page.evaluate("() => performance.now()")
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("() => window.__tb.some(e => e[0] === 'state' && e[1] === 'notRunning')", timeout=30_000)
    page.wait_for_timeout(400)  # let plotly finish drawing; later mutations are still recorded
    events = page.evaluate("() => window.__tb")
    done = max(t for kind, state, t in events if kind == "chart" or state == "notRunning")
    return (done - t0) / 1000.0


def _open_case(page, url: str, study_id: int) -> float:
    page.goto(url)
    page.wait_for_selector(IDLE, timeout=60_000)
    page.locator("[data-testid='stSelectbox']").filter(has_text="Case").locator("input").click()
    page.get_by_role("option").nth(study_id - 1).click()
    page.wait_for_selector(IDLE, timeout=60_000)
    t0 = time.perf_counter()
    page.get_by_role("button", name="Open in viewer").click()
    page.wait_for_url("**/viewer**")
    page.locator("[data-testid='stPlotlyChart'] .imagelayer image").first.wait_for(state="attached", timeout=60_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    return time.perf_counter() - t0


def browser_timings(url: str, n_cases: int, repeats: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    out = {"case open (first)": [], "case open (other case)": [], "case open (again)": [],
           "slice change": [], "frame change": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        out["case open (first)"].append(_open_case(page, url, 1))
        for study in range(2, n_cases + 1):
            out["case open (other case)"].append(_open_case(page, url, study))
        for _ in range(repeats):
            out["case open (again)"].append(_open_case(page, url, 1))
        page.evaluate(_OBSERVE)
        for label, key in (("slice change", "k (voxel)"), ("frame change", "Frame")):
            slider = page.locator("[data-testid='stSlider']").filter(has_text=key).get_by_role("slider")
            for _ in range(repeats * 4):
                out[label].append(_in_page_latency(page, slider))
        browser.close()
    return out


def engine_timings(data_dir: Path, repeats: int) -> dict[str, list[float]]:
    import os

    for key, value in store_env(data_dir).items():
        os.environ.setdefault(key, value)
    from core.cases.repository import CaseRepository
    from core.imaging.planes import to_canonical
    from core.imaging.resample import resample_to
    from core.viz.slices import orthogonal_planes

    repo = CaseRepository()
    case = repo.get_case(repo.list_cases()[0].study_id)
    pet = repo.load_series(next(s.id for s in case.series if s.role == "dynamic_pet"))
    mri = to_canonical(repo.load_series(next(s.id for s in case.series if s.role in ("t1c", "t1"))))
    frame = pet.frame(pet.n_frames - 1)
    cursor = [s // 2 for s in mri.shape]
    ours, naive = [], []
    for r in range(repeats * 4):
        cursor[2] = mri.shape[2] // 2 + (r % 5)
        t0 = time.perf_counter()
        orthogonal_planes(mri, cursor, frame)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        orthogonal_planes(mri, cursor, resample_to(frame, mri))
        naive.append(time.perf_counter() - t0)
    return {"planes: sample on screen": ours, "planes: resample volume": naive}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="an existing store (default: a fresh demo store)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", type=int, default=4, help="cases in the fresh demo store (default 4)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or Path(tmp) / "store"
        env = store_env(data_dir) if args.data_dir else build_demo_store(data_dir, n=args.cases)
        proc, url = start_server(env, Path(tmp) / "streamlit.log")
        try:
            browser = browser_timings(url, args.cases, args.repeats)
        finally:
            proc.terminate()
        engine = engine_timings(data_dir, args.repeats)
    print("TheraBoard viewer benchmark (browser: Debian Chromium headless via Playwright)")
    print(_summary("case open (first)", browser["case open (first)"], 2.0))
    print(_summary("case open (other case)", browser["case open (other case)"], 2.0))
    print(_summary("case open (again)", browser["case open (again)"], 2.0))
    print(_summary("slice change", browser["slice change"], 0.3))
    print(_summary("frame change", browser["frame change"], 0.3))
    print("Engine, one slice change (project vs baseline):")
    print(_summary("planes: sample on screen", engine["planes: sample on screen"], 0.3))
    print(_summary("planes: resample volume", engine["planes: resample volume"], 0.3))


if __name__ == "__main__":
    main()
