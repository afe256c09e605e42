"""Issue 18's reliability record: every bad input of item 4 run as the console command a user would type,
and the lake faults that need no running stack; writes benchmarks/results/reliability.md.

For each bad input: the command, its exit status, its message (stderr without log lines), and whether the
published partitions changed (checksums of every manifest before and after: `echelon checksums`). A good
file is ingested first, so there is something published to lose.

Lake faults (no services): a task killed between its two tables, a part file swapped for one with fewer
rows, a truncated part file, one flipped byte. The stack's faults (Postgres, MLflow or a Spark worker down
mid-run, a full disk mid-publish, a corrupt partition) are benchmarks/chaos.py's (`make chaos`), whose
section of the same file this script keeps.

    .venv/bin/python benchmarks/reliability.py        # ~3-5 min on 2 loaded cores (two JVM starts)
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOG_LINE = re.compile(r"^\d{4}-\d{2}-\d{2} [\d:,]+ (DEBUG|INFO|WARNING|ERROR) ")
OUT = ROOT / "benchmarks" / "results" / "reliability.md"


def run(argv: list[str], env: dict) -> tuple[int, str, float]:
    began = time.time()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    lines = [line for line in done.stderr.strip().splitlines() if not LOG_LINE.match(line) and line.strip()]
    ours = [line for line in lines if line.startswith("echelon ") or ": error: " in line]
    message = ours[-1] if ours else (lines[-1] if lines else "")   # the CLI's one line, not the JVM's chatter
    if "Traceback" in done.stderr:
        message = "(traceback) " + message
    return done.returncode, message[:400], time.time() - began


def published(env: dict) -> dict:
    sys.path.insert(0, str(ROOT))
    from echelon import checksums

    return checksums.dump(Path(env["ECHELON_VAR"]) / "lake")


def files(folder: Path) -> dict[str, Path]:
    """The inputs of the cases, written into folder."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {}

    def write(name: str, data: str | bytes) -> Path:
        path = folder / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        made[name] = path
        return path

    days = pd.date_range("2024-01-01", "2024-02-29", freq="D")
    good = pd.DataFrame({"item_id": "a", "timestamp": days.strftime("%Y-%m-%d"), "target": 1.0})
    good.to_csv(folder / "good.csv", index=False)
    made["good.csv"] = folder / "good.csv"
    gap = good[~good["timestamp"].between("2024-02-01", "2024-02-10")]
    gap.to_csv(folder / "gap.csv", index=False)
    made["gap.csv"] = folder / "gap.csv"
    write("dayfirst.csv", "item_id,timestamp,target\n" + "".join(f"a,{d:02d}/03/2024,{d}\n" for d in range(1, 13)))
    write("latin1.csv", "item_id,timestamp,target\ncaf\xe9,2024-01-01,1\n".encode("latin-1"))
    header = "request_id,seller_id,storage_type,max_fee_per_cuft,cuft_requested,submitted_at\n"
    rows = "007,S1,standard,5.0,100,2026-11-20T10:00:00Z\n7,S2,standard,4.0,100,2026-11-20T11:00:00Z\n"
    write("requests.csv", header + rows)
    write("requests_empty.csv", b"")
    write("requests_header.csv", header)
    write("requests_latin1.csv", (header + rows.replace("S1", "S\xe9")).encode("latin-1"))
    imps = "impression_id,segment,callout_id,layout_id,propensity,shown_at\n"
    for name, text in (("no_shown_at", "impression_id,segment,callout_id,layout_id,propensity\ni1,s0,c0,default,0.5\n"),
                       ("propensity_abc", imps + "i1,s0,c0,default,abc,2026-11-01T00:00:00Z\n"),
                       ("latin1", (imps + "i1,s\xe9,c0,default,0.5,2026-11-01T00:00:00Z\n").encode("latin-1"))):
        (folder / f"logs_{name}").mkdir(exist_ok=True)
        write(f"logs_{name}/impressions.csv", text)
        write(f"logs_{name}/clicks.csv", "impression_id,clicked_at\n")
    return made


def cases(f: dict[str, Path], tmp: Path) -> list[tuple[str, list[str]]]:
    e = str(BIN / "echelon")
    ingest = [str(BIN / "python"), "-m", "echelon.jobs.demand.ingest"]
    out = str(tmp / "out.csv")
    return [
        ("--ds not YYYY-MM-DD", [e, "demand", "summary", "--ds", "2026/11/20"]),
        ("ambiguous day-first dates", [e, "forecast", "--input", str(f["dayfirst.csv"]), "--output", out, "--horizon", "2",
                                       "--model", "seasonal_naive"]),
        ("--horizon 100000", [e, "forecast", "--input", str(f["good.csv"]), "--output", out, "--horizon", "100000"]),
        ("forecast file not UTF-8", [e, "forecast", "--input", str(f["latin1.csv"]), "--output", out, "--horizon", "2"]),
        ("capacity requests missing", [e, "capacity", "clear", "--requests", str(tmp / "nowhere.csv"), "--capacity", "150",
                                       "--output", str(tmp / "round")]),
        ("capacity requests empty", [e, "capacity", "clear", "--requests", str(f["requests_empty.csv"]), "--capacity", "150",
                                     "--output", str(tmp / "round")]),
        ("capacity requests: header only", [e, "capacity", "clear", "--requests", str(f["requests_header.csv"]),
                                            "--capacity", "150", "--output", str(tmp / "round")]),
        ("capacity requests not UTF-8", [e, "capacity", "clear", "--requests", str(f["requests_latin1.csv"]),
                                         "--capacity", "150", "--output", str(tmp / "round")]),
        ("--cutoff yesterday", [e, "capacity", "clear", "--requests", str(f["requests.csv"]), "--capacity", "150",
                                "--output", str(tmp / "round"), "--cutoff", "yesterday"]),
        ("request ids 007 and 7 (valid: two requests)", [e, "capacity", "clear", "--requests", str(f["requests.csv"]),
                                                         "--capacity", "150", "--output", str(tmp / "round_ok")]),
        ("ope logs without shown_at", [e, "callouts", "ope", "--logs", str(f["logs_no_shown_at/impressions.csv"].parent),
                                       "--policy", "uniform", "--output", str(tmp / "ope")]),
        ("ope propensity 'abc'", [e, "callouts", "ope", "--logs", str(f["logs_propensity_abc/impressions.csv"].parent),
                                  "--policy", "uniform", "--output", str(tmp / "ope")]),
        ("ope logs not UTF-8", [e, "callouts", "ope", "--logs", str(f["logs_latin1/impressions.csv"].parent),
                                "--policy", "uniform", "--output", str(tmp / "ope")]),
        ("ingest --input with a 10-day gap", [*ingest, "--input", str(f["gap.csv"]), "--ds", "2024-02-29",
                                              "--history-days", "60"]),
    ]


KILLED = """
import time, pandas as pd
from echelon import lake
frame = pd.DataFrame({"item_id": ["x"], "target": [9.0]})
with lake.transaction("2024-02-29") as tx:
    tx.publish(frame, lake.Table("raw", "demand", "sales"))
    print("swapped", flush=True)
    time.sleep(600)
"""


def lake_faults(env: dict) -> list[dict]:
    """Faults on the lake itself, each followed by the reader's outcome."""
    sys.path.insert(0, str(ROOT))
    os.environ.update({k: env[k] for k in ("ECHELON_VAR",)})
    from echelon import lake
    from echelon.catalog.demand import RAW_SALES

    ds, results = "2024-02-29", []
    before = published(env)
    writer = subprocess.Popen([sys.executable, "-c", KILLED], env=env, stdout=subprocess.PIPE, text=True)
    writer.stdout.readline()
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    seen = lake.read_manifest(RAW_SALES, ds)["checksum"] == before[f"{RAW_SALES}/ds={ds}"]["checksum"]
    undone = lake.recover()
    results.append({"fault": "ingest SIGKILLed after swapping raw/demand/sales, before raw/demand/plan",
                    "outcome": f"readers saw the old sales: {seen}; next publish/recover rolled back {len(undone)} "
                               f"commit(s); partitions unchanged: {published(env) == before}"})
    part = next(RAW_SALES.partition(ds).glob("*.parquet"))
    original = part.read_bytes()
    for fault, damage in (("a part file truncated to half", lambda b: b[: len(b) // 2]),
                          ("one byte flipped in a data page", lambda b: b[: len(b) // 3] + bytes([b[len(b) // 3] ^ 255]) + b[len(b) // 3 + 1:]),
                          ("a part file replaced by one with fewer rows", None)):
        if damage is None:
            lake.read(RAW_SALES, ds).drop(columns="ds").head(-4).to_parquet(part, index=False)
        else:
            part.write_bytes(damage(original))
        try:
            lake.read(RAW_SALES, ds)
            outcome = "read without error (NOT detected)"
        except lake.LakeError as error:
            outcome = f"LakeError: {str(error)[:200]}"
        part.write_bytes(original)
        results.append({"fault": f"{RAW_SALES} ds={ds} (60 rows): {fault}", "outcome": outcome})
    return results


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="reliability-") as folder:
        tmp = Path(folder)
        env = {**os.environ, "ECHELON_VAR": str(tmp / "var"), "OPENBLAS_NUM_THREADS": "1"}
        for key in ("ECHELON_LAKE", "ECHELON_REPORTS", "MLFLOW_TRACKING_URI"):
            env.pop(key, None)
        made = files(tmp / "inputs")
        load = os.getloadavg()
        code, message, _ = run([str(BIN / "python"), "-m", "echelon.jobs.demand.ingest", "--input",
                                str(made["good.csv"]), "--history-days", "60"], env)
        assert code == 0, message
        rows = []
        for name, argv in cases(made, tmp):
            before = published(env)
            code, message, seconds = run(argv, env)
            after = published(env)
            shown = " ".join(shlex.quote(a.replace(str(tmp), "$TMP").replace(str(BIN) + "/", "")) for a in argv)
            rows.append((name, shown, code, message.replace(str(tmp), "$TMP").replace("|", "\\|"), seconds,
                         f"{len(before)} partitions, unchanged" if before == after else f"CHANGED: {len(before)} -> {len(after)}"))
        faults = lake_faults(env)
    lines = ["# Reliability: bad inputs and lake faults (issue 18)", "",
             f"Generated by `benchmarks/reliability.py` on {dt.date.today()}; load average "
             f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} cores at the start. "
             "Exit status 2 = bad input (one line naming it), 1 = anything else, 0 = success. "
             "'Published' compares the checksums of every manifest of the lake before and after the command "
             "(a good file was ingested first, so raw/demand/sales and plan exist).", "",
             "## Bad inputs", "", "| case | command | exit | message | seconds | published |", "|---|---|---|---|---|---|"]
    lines += [f"| {n} | `{c}` | {code} | {m} | {s:.1f} | {p} |" for n, c, code, m, s, p in rows]
    lines += ["", "## Lake faults (no services needed)", "", "| fault | outcome |", "|---|---|"]
    lines += [f"| {f['fault']} | {f['outcome'].replace('|', '/')} |" for f in faults]
    # the stack's faults are benchmarks/chaos.py's (`make chaos`): its section of this file is kept as it is
    kept = ""
    if OUT.exists() and "\n## Fault matrix on the stack" in OUT.read_text():
        kept = OUT.read_text()[OUT.read_text().index("\n## Fault matrix on the stack"):]
    else:
        lines += ["", "## Fault matrix on the stack", "", "Not run yet: `make chaos` (benchmarks/chaos.py) writes it."]
    OUT.write_text("\n".join(lines) + "\n" + kept)
    print(OUT.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
