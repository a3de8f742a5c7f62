"""The Markdown table and the PNG plots of a bench JSON document."""

from __future__ import annotations

from pathlib import Path



def _save(fig, path: Path) -> str:
    """Lay out, write and close a figure; return its path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)

def _f(v, digits: int = 2, unit: str = "") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}{unit}"
        return f"{v:.{digits}f}{unit}"
    return f"{v}{unit}"


def hardware_line(r: dict) -> str:
    h = r["hardware"]
    s = f"{h['cpu']}, {h['cores']} cores, {h['last_level_cache_mb']:.0f} MB LLC, torch {h['torch']}, {h['torch_threads']} torch threads"
    if h.get("gpu"):
        s += f"; GPU {h['gpu']} ({h['gpu_memory_gb']} GB, CUDA {h.get('cuda')})"
    end = h.get("load_average_1min_at_end")
    s += f"; load average {h.get('load_average_1min_at_start', 0):.1f} at start, " + (f"{end:.1f} at end" if end is not None else "none recorded at end")
    return s


def markdown(r: dict) -> str:
    dev = r["device"]
    lines = [f"# poselift bench ({dev}{', quick' if r.get('quick') else ''})", "", f"Hardware: {hardware_line(r)}.", ""]
    lines += ["All ratios come from one run with the candidates interleaved round robin; latencies are p50 / p99.", ""]
    step = r.get("step") or {}
    lines += ["## Streaming step (batch 1) against re-running the window", "",
              "| model | candidate | p50 ms | p99 ms | x floor | speed-up vs dilated | vs strided |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for key, g in step.items():
        if not g or "latency" not in g:
            if g and g.get("skipped"):
                lines.append(f"| {key} | skipped: {g['skipped']} | | | | | |")
            continue
        name = g.get("model") or f"{g['receptive_field']}f/{g['channels']}ch causal"
        for cand, lat in g["latency"].items():
            p = cand.replace("step_", "")
            sd = g.get("speedup_vs_dilated", {}).get(p)
            ss = g.get("speedup_vs_strided", {}).get(p)
            kind = g["backends"].get(p, "eager" if cand.endswith("_eager") else "torch") if cand.startswith("step") else "fp32"
            lines.append(f"| {name} | {cand} ({kind}) | "
                         f"{_f(lat['p50_ms'], 3)} | {_f(lat['p99_ms'], 3)} | {_f(g.get('floor_multiple', {}).get(cand))} | "
                         f"{_f(sd, 1) + 'x' if sd else ''} | {_f(ss, 1) + 'x' if ss else ''} |")
        if "floor_ms" in g:
            lines.append(f"| {name} | **floor** ({g['weight_bytes_fp32'] / 1e6:.1f} MB fp32 / {g['read_bandwidth_gbs']:.1f} GB/s) | "
                         f"{_f(g['floor_ms'], 3)} | | 1.00 | | |")
    th = step.get("threads")
    if th:
        lines += ["", "Thread settings (243f, interleaved; each call sets its count):", "",
                  "| precision@threads | p50 ms | p99 ms |", "|---|---:|---:|"]
        for k, v in th.items():
            lines.append(f"| {k} | {_f(v['p50_ms'], 3)} | {_f(v['p99_ms'], 3)} |")
    st = r.get("streams")
    if st:
        lines += ["", "## Many streams stepped as one batch (243f/1024ch)", "",
                  "| precision | streams | batch p50 ms | per-stream ms | fraction of one stream (same section) | (step section's single) |",
                  "|---|---:|---:|---:|---:|---:|"]
        for p, rows in st.items():
            if p == "trials":
                continue
            for n, row in rows.items():
                alt = row.get("fraction_of_step_section_single")
                lines.append(f"| {p} | {n} | {_f(row['batch_p50_ms'], 3)} | {_f(row['per_stream_ms'], 4)} | 1/{1 / row['fraction_of_single']:.1f} | "
                             f"{'1/%.1f' % (1 / alt) if alt else 'n/a'} |")
    off = r.get("offline")
    if off:
        lines += ["", f"## Offline throughput ({r.get('offline_model')})", "", "| frames | path | frames/s | p50 ms |", "|---|---|---:|---:|"]
        for n, row in off.items():
            for path, v in row.items():
                lines.append(f"| {n} | {path} | {_f(v['fps'])} | {_f(v['p50_ms'], 1)} |")
        if r.get("offline_accuracy_vs_fp32"):
            acc = ", ".join(f"{k}: mean {v['mean_mm']:.2f} mm, max {v['max_mm']:.2f} mm" for k, v in r["offline_accuracy_vs_fp32"].items())
            lines.append(f"\nReduced-precision offline deviation from fp32 (random input): {acc}.")
    wide = r.get("offline_1024ch")
    if wide:
        lines += ["", "Offline, random weights at the paper's width (243f/1024ch symmetric), one batch of sequences:", "",
                  "| frames | path | frames/s | p50 ms |", "|---|---|---:|---:|"]
        for n, row in wide.items():
            for path, v in row.items():
                lines.append(f"| {n} | {path} | {_f(v['fps'])} | {_f(v['p50_ms'], 1)} |")
    acc = r.get("accuracy")
    if acc and not acc.get("skipped"):
        lines += ["", "## Accuracy of each precision (streamed at batch 1)", "", f"Data: {acc['data']}. Model: {acc['model']}.", "",
                  "| precision | P1 mm | change from fp32 mm | mean / max deviation from fp32 mm |", "|---|---:|---:|---:|"]
        for p, v in acc["p1_mm"].items():
            d = acc["deviation_from_fp32_mm"][p]
            lines.append(f"| {p} | {v:.2f} | {acc['delta_mm'][p]:+.3f} | {d['mean']:.3f} / {d['max']:.2f} |")
    elif acc:
        lines += ["", f"Accuracy: skipped ({acc.get('data')})."]
    z = r.get("zmq")
    if z:
        lines += ["", f"## ZeroMQ end to end over loopback ({z['mode']}, server in its own process; {z.get('model')})", "",
                  "| precision@torch threads | latency p50 ms | p99 ms | highest sustained rate (0 lost), fps | rates tried |", "|---|---:|---:|---:|---|"]
        for p, v in z["by_precision"].items():
            tried = ", ".join(f"{x['rate_fps']:.0f}{'' if x['sustained'] else ' (lag %.2f s)' % x['lag_after_last_send_s']}" for x in v["rates"])
            lines.append(f"| {p} | {_f(v['latency']['p50_ms'], 3)} | {_f(v['latency']['p99_ms'], 3)} | {_f(v['max_sustained_fps'])} | {tried} |")
        lines.append(f"\nRates use {z['streams_for_rate']} streams, batched by the server.")
    for pl in (r.get("pipeline"), r.get("pipeline_int8")):
        if not pl:
            continue
        ms = pl["pipeline_ms"]
        lines += ["", f"## Webcam pipeline on a video file ({pl['video']}; {pl['precision']}, {pl['torch_threads']} torch thread)", "",
                  "| stage | ms per frame (median) |", "|---|---:|"]
        for k, v in ms.items():
            lines.append(f"| {'sum of the stage medians' if k == 'total' else k} | {v:.2f} |")
        lines.append(f"\n{pl['fps_wall']:.1f} fps wall clock ({pl['frames']} frames, start-up included); the stage medians "
                     f"sum to {ms['total']:.2f} ms; lift is {100 * pl['lift_share']:.1f} % of that sum.")
    mo = r.get("motion")
    if mo:
        lines += ["", "## Motion stage (body, consistent joints, rotations; bench/motion.py)", "",
                  "| streams per batch | batch ms (median) | per pose ms | per pose ms, cold caches (as in a live loop) |",
                  "|---:|---:|---:|---:|"]
        lines += [f"| {key[len('streams_'):]} | {_f(v['batch_ms'], 3)} | {_f(v['per_pose_ms'], 4)} | "
                  f"{_f(v.get('cold_per_pose_ms'), 4)} |" for key, v in mo.items()]
    if r.get("goals"):
        lines += ["", "## Goals", "", "| goal | measured | target | met |", "|---|---:|---|---|"]
        for g in r["goals"]:
            v = g["value"]
            lines.append(f"| {g['goal']} | {_f(v, 3) if isinstance(v, float) else _f(v)} | {g['target']} | "
                         f"{'yes' if g['met'] else ('n/a' if g['met'] is None else '**no**')} |")
    if r.get("errors"):
        lines += ["", "## Errors", ""] + [f"- {k}: {v}" for k, v in r["errors"].items()]
    if "elapsed_s" in r:
        lines.append(f"\nBench took {r['elapsed_s']:.0f} s.")
    else:  # a run cut short leaves no elapsed time and no goals
        lines.append("\nThe run did not finish: no elapsed time and no goals were written.")
    return "\n".join(lines) + "\n"


def plots(r: dict, out_dir: str | Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (NullFormatter for the receptive-field axis)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    h = r["hardware"]
    hw = f"{h['gpu']}, torch {h['torch']}" if h.get("gpu") else hardware_line(r).split(";")[0]
    step = {k: v for k, v in (r.get("step") or {}).items() if k.isdigit() and v}
    if step:
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        rfs = sorted(step, key=int)
        cands = list(step[rfs[0]]["latency"])
        for c in cands:
            ys = [step[k]["latency"][c]["p50_ms"] for k in rfs]
            ax.plot([int(k) for k in rfs], ys, marker="o", linestyle="--" if c.startswith("window") else "-", label=c)
        if all("floor_ms" in step[k] for k in rfs):
            ax.plot([int(k) for k in rfs], [step[k]["floor_ms"] for k in rfs], color="k", linestyle=":", label="fp32 floor")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([int(k) for k in rfs], [str(k) for k in rfs])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("receptive field (frames), 1024 channels")
        ax.set_ylabel("ms per frame (p50)")
        ax.set_title(f"Streaming step vs window re-run\n{hw}", fontsize=8)
        ax.legend(fontsize=7)
        written.append(_save(fig, out_dir / "latency_vs_receptive_field.png"))
    off = r.get("offline")
    if off:
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        keys = [k for k in off if k.isdigit()]
        paths = list(off[keys[0]]) if keys else []
        for path in paths:
            ax.plot([int(k) for k in keys], [off[k][path]["fps"] for k in keys], marker="o", label=path)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sequence length (frames)")
        ax.set_ylabel("frames per second")
        ax.set_title(f"Offline throughput, full-context model\n{hw}", fontsize=8)
        ax.legend(fontsize=7)
        written.append(_save(fig, out_dir / "throughput_vs_length.png"))
    st = r.get("streams")
    if st:
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for prec, rows in st.items():
            if prec == "trials":
                continue
            ns = [int(n) for n in rows]
            ax.plot(ns, [rows[str(n)]["per_stream_ms"] for n in ns], marker="o", label=prec)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("streams stepped as one batch")
        ax.set_ylabel("ms per stream per frame (p50)")
        ax.set_title(f"Per-stream cost, 243f/1024ch\n{hw}", fontsize=8)
        ax.legend(fontsize=7)
        written.append(_save(fig, out_dir / "per_stream_cost.png"))
    return written
