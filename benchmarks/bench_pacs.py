"""PACS retrieval and search speed against a private local Orthanc, and memory while fetching.

Measures, in one run, against one Orthanc started for it on loopback:

1. fetching a 300-slice 512x512 CT study into PriorSync's cache over DICOMweb
   (WADO-RS), over C-GET and over C-MOVE, each as a ratio to Orthanc's own
   download of the same study (REST ``/studies/{id}/archive``, streamed to a
   file), measured in the same run (goal <= 1.3x);
2. search latency with 50 patients x 4 studies on the server, for every kind
   of search the Open-from-PACS dialog offers (patient ID, name wildcard,
   accession number, date range) over both protocols (goal <= 300 ms). Each
   search opens a fresh backend, as the dialog does (association or HTTP
   connection included); the same-run baseline is Orthanc's own REST
   ``/tools/find`` of the same query (its index, expanded), and a C-ECHO
   round trip on a fresh association;
3. the peak extra resident memory while fetching, against the study's size
   (bounded: instances are streamed to disk, not held whole).

Run::

    .venv/bin/python benchmarks/bench_pacs.py [--slices 300] [--repeat 3] [--only fetch|search]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.core.volume import Geometry, SeriesInfo, Volume  # noqa: E402
from app.io.dicom_write import write_dicom_series  # noqa: E402
from app.pacs.backend import open_backend  # noqa: E402
from app.pacs.cache import StudyCache  # noqa: E402
from app.pacs.credentials import ENV_SECRET  # noqa: E402
from app.pacs.dicomweb import STUDY_FIELDS  # noqa: E402
from app.pacs.local_orthanc import LocalOrthanc, free_port  # noqa: E402
from app.pacs.records import StudyQuery  # noqa: E402
from app.pacs.retrieve import fetch_study  # noqa: E402
from app.pacs.servers import ServerConfig  # noqa: E402

FETCH_GOAL = 1.3
SEARCH_GOAL_MS = 300.0


def ct_volume(n: int, size: int, seed: int, info: SeriesInfo) -> Volume:
    """A CT-like volume (body, lungs, noise); every slice differs."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    c = (size - 1) / 2
    voxels = np.full((n, size, size), -1000, dtype=np.int16)
    for k in range(n):
        s = 1.0 - 0.3 * k / max(n - 1, 1)
        body = ((x - c) / (0.45 * size * s)) ** 2 + ((y - c) / (0.38 * size)) ** 2 <= 1
        lungs = (np.abs(x - c) - 0.18 * size) ** 2 / (0.12 * size) ** 2 + (
            (y - c) / (0.2 * size)
        ) ** 2 <= 1
        voxels[k][body] = 40
        voxels[k][lungs] = -850
        voxels[k] += rng.integers(-20, 21, size=(size, size), dtype=np.int16)
    geometry = Geometry(
        origin=(-200.0, -200.0, 0.0), spacing=(0.78, 0.78, 1.0), direction=np.eye(3)
    )
    return Volume(voxels=voxels, geometry=geometry, info=info)


def info(pid: str, name: str, date: str, n: int) -> SeriesInfo:
    return SeriesInfo(
        patient_id=pid,
        patient_name=name,
        study_date=date,
        study_time="120000",
        study_description="CT CHEST",
        accession_number=f"A{pid}{n}",
        series_description="Axial 1.0",
        series_number=2,
    )


class PeakRss:
    """Samples this process's resident memory every 5 ms while active."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> PeakRss:
        self.start = self.proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def extra_mb(self) -> float:
        return max(0, self.peak - self.start) / 1e6


def archive_download(orthanc: LocalOrthanc, study_uid: str, folder: Path) -> float:
    session = orthanc.session()
    oid = orthanc.study_id(study_uid)
    t0 = time.perf_counter()
    with session.get(f"{orthanc.rest_url}/studies/{oid}/archive", stream=True, timeout=600) as r:
        r.raise_for_status()
        with open(folder / "study.zip", "wb") as f:
            for chunk in r.iter_content(1 << 20):
                f.write(chunk)
    return time.perf_counter() - t0


def timed_fetch(server: ServerConfig, study_uid: str, root: Path) -> tuple[float, float, int]:
    cache_root = Path(tempfile.mkdtemp(dir=root))
    try:
        with open_backend(server) as backend, PeakRss() as rss:
            t0 = time.perf_counter()
            result = fetch_study(backend, study_uid, StudyCache(cache_root))
            seconds = time.perf_counter() - t0
        return seconds, rss.extra_mb, result.study.n_instances
    finally:
        shutil.rmtree(cache_root, ignore_errors=True)


SEARCHES = {
    "patient ID": (StudyQuery(patient_id="P025"), {"PatientID": "P025"}),
    "name wildcard": (StudyQuery(patient_name="Patient02*"), {"PatientName": "Patient02*"}),
    "accession": (StudyQuery(accession="AP0252"), {"AccessionNumber": "AP0252"}),
    "date range": (
        StudyQuery(date_from="20210101", date_to="20211231"),
        {"StudyDate": "20210101-20211231"},
    ),
}


@dataclass
class Timing:
    """Median wall time of a call, the mean CPU time it cost us and the server, its answer."""

    wall_ms: float
    ours_cpu_ms: float
    server_cpu_ms: float
    answer: object

    @property
    def cpu(self) -> str:
        return f"CPU {self.ours_cpu_ms:5.1f} ms ours + {self.server_cpu_ms:5.1f} ms Orthanc's"


def measure(fn: Callable[[], object], n: int, server: psutil.Process) -> Timing:
    """``n`` calls of ``fn`` after one untimed warm-up call.

    CPU times (ours: every thread of this process; the server's: Orthanc's
    process) do not grow with the machine's load the way wall time does: on
    a quiet machine a search takes about their sum plus the loopback trips.
    """
    answer = fn()
    times = []
    ours0, server0 = time.process_time(), sum(server.cpu_times()[:2])
    for _ in range(n):
        t = time.perf_counter()
        answer = fn()
        times.append((time.perf_counter() - t) * 1000)
    ours = (time.process_time() - ours0) * 1000 / n
    theirs = (sum(server.cpu_times()[:2]) - server0) * 1000 / n
    return Timing(statistics.median(times), ours, theirs, answer)


def fill_search_server(orthanc: LocalOrthanc, root: Path, matrix: int) -> None:
    """50 patients x 4 studies of one CT image each, at the CT's own matrix size.

    Orthanc's DICOMweb plugin (1.7) reads one instance of every matching
    study to answer QIDO-RS, so the images are real-sized (though its cost
    was measured the same for 16x16 and 512x512 images).
    """
    files = []
    for p in range(50):
        for s in range(4):
            v = ct_volume(
                1,
                matrix,
                p * 4 + s,
                info(f"P{p:03d}", f"Patient{p:03d}^Test", f"20{20 + s}0101", s),
            )
            files += write_dicom_series(v, root / "small" / f"{p}-{s}")
    orthanc.upload(files)


def search_benchmark(orthanc: LocalOrthanc, servers: dict[str, ServerConfig], repeat: int) -> None:
    session = orthanc.session()
    assert orthanc.pid is not None
    server = psutil.Process(orthanc.pid)

    def rest_find(query: dict[str, str]) -> Callable[[], object]:
        body = {"Level": "Study", "Query": query, "Expand": True}
        return lambda: session.post(f"{orthanc.rest_url}/tools/find", json=body, timeout=30).json()

    def raw_qido(query: dict[str, str]) -> Callable[[], object]:
        # One GET of what our DICOMweb search asks, on a kept connection, not parsed.
        fields = "&".join(f"includefield={f}" for f in STUDY_FIELDS)
        params = "&".join(f"{k}={v}" for k, v in query.items())
        url = f"{orthanc.dicomweb_url}/studies?{params}&{fields}"
        return lambda: session.get(url, timeout=30).content

    def fresh_echo() -> None:
        with open_backend(servers["DIMSE C-GET"]) as backend:
            backend.echo()

    echo = measure(fresh_echo, repeat, server)
    print(f"  C-ECHO, fresh association (baseline)     {echo.wall_ms:6.1f} ms; {echo.cpu}")
    for label, (query, rest_query) in SEARCHES.items():
        base = measure(rest_find(rest_query), repeat, server)
        n_expected = len(base.answer) if isinstance(base.answer, list) else -1
        print(
            f"  {label:<14} REST /tools/find (baseline) {base.wall_ms:6.1f} ms; {base.cpu} "
            f"({n_expected} studies)"
        )
        qido = measure(raw_qido(rest_query), repeat, server)
        print(f"  {label:<14} the server's QIDO-RS alone  {qido.wall_ms:6.1f} ms; {qido.cpu}")
        for name in ("DICOMweb (WADO-RS)", "DIMSE C-GET"):
            config = servers[name]

            def search(config: ServerConfig = config, query: StudyQuery = query) -> object:
                with open_backend(config) as backend:
                    return backend.find_studies(query)

            got = measure(search, repeat, server)
            n = len(got.answer) if isinstance(got.answer, list) else -1
            verdict = "meets" if got.wall_ms <= SEARCH_GOAL_MS else "misses"
            check = "" if n == n_expected else f"  WRONG: {n} studies, the index has {n_expected}"
            protocol = name.split(" ")[0]
            print(
                f"  {label:<14} {protocol:<8} search        {got.wall_ms:6.1f} ms; {got.cpu}; "
                f"= {got.wall_ms / base.wall_ms:4.1f}x baseline ({verdict} <= "
                f"{SEARCH_GOAL_MS:.0f} ms){check}"
            )


def fetch_benchmark(
    orthanc: LocalOrthanc,
    servers: dict[str, ServerConfig],
    root: Path,
    slices: int,
    matrix: int,
    repeat: int,
) -> None:
    volume = ct_volume(slices, matrix, 1, info("BIG-1", "Big^Study", "20260101", 0))
    files = write_dicom_series(volume, root / "big")
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    size_mb = sum(p.stat().st_size for p in files) / 1e6
    t0 = time.perf_counter()
    orthanc.upload(files)
    print(f"uploaded {len(files)} slices ({size_mb:.0f} MB) in {time.perf_counter() - t0:.1f} s")
    baseline = min(archive_download(orthanc, study_uid, root) for _ in range(repeat))
    print(f"\nfetch of a {slices}-slice {matrix}x{matrix} CT study ({size_mb:.0f} MB)")
    print(f"  Orthanc REST archive (baseline)  {baseline:6.2f} s")
    for label, server in servers.items():
        runs = [timed_fetch(server, study_uid, root) for _ in range(repeat)]
        best = min(r[0] for r in runs)
        peak = max(r[1] for r in runs)
        ratio = best / baseline
        verdict = "meets" if ratio <= FETCH_GOAL else "misses"
        print(
            f"  {label:<32} {best:6.2f} s  = {ratio:4.2f}x baseline ({verdict} <= {FETCH_GOAL}x); "
            f"peak extra memory {peak:5.0f} MB = {peak / size_mb:4.2f}x the study"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--matrix", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3, help="fetches per method (best kept)")
    parser.add_argument("--searches", type=int, default=20, help="timed searches per query")
    parser.add_argument("--only", choices=("fetch", "search"), help="run one part only")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-pacs-"))
    move_port = free_port()
    orthanc = LocalOrthanc(modalities={"PRIORSYNC": ("127.0.0.1", move_port)})
    try:
        orthanc.start()
        os.environ[ENV_SECRET] = orthanc.password
        servers = {
            "DICOMweb (WADO-RS)": ServerConfig(
                name="web",
                protocol="dicomweb",
                base_url=orthanc.dicomweb_url,
                auth="basic",
                username=orthanc.username,
                timeout_s=120,
            ),
            "DIMSE C-GET": ServerConfig(
                name="get",
                protocol="dimse",
                host="127.0.0.1",
                port=orthanc.dicom_port,
                called_ae=orthanc.aet,
                timeout_s=120,
            ),
            "DIMSE C-MOVE": ServerConfig(
                name="move",
                protocol="dimse",
                host="127.0.0.1",
                port=orthanc.dicom_port,
                called_ae=orthanc.aet,
                retrieve="move",
                move_port=move_port,
                timeout_s=120,
            ),
        }
        if args.only != "search":
            fetch_benchmark(orthanc, servers, root, args.slices, args.matrix, args.repeat)
        if args.only != "fetch":
            t0 = time.perf_counter()
            fill_search_server(orthanc, root, args.matrix)
            print(
                f"\nsearch with 50 patients x 4 studies on the server (filled in "
                f"{time.perf_counter() - t0:.0f} s); median of {args.searches}, fresh backend each"
            )
            search_benchmark(orthanc, servers, args.searches)
    finally:
        os.environ.pop(ENV_SECRET, None)
        orthanc.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
