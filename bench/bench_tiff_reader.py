"""Our lazy TIFF movie reader against napari's builtin reader: peak RSS growth and the
time to open a ~2 GB BigTIFF (4,000 x 512 x 512 uint16, uncompressed and zlib) and show its first
frame, each in its own process, interleaved; prints the builtin/ours ratios per repeat.

    python bench/bench_tiff_reader.py make DIR      # writes DIR/plain.tif and DIR/zlib.tif (~3.4 GB, ~70 s)
    python bench/bench_tiff_reader.py run DIR 3     # 3 repeats

Run under a display (`xvfb-run -a` without one); delete DIR afterwards."""
import json, os, resource, subprocess, sys, time
import numpy as np

T, Y, X = 4000, 512, 512  # uint16: 2.1 GB


def frames(seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(20, 200, (Y, X)).astype(np.uint16)
    for t in range(T):
        noise = rng.integers(0, 16, (Y, X), dtype=np.uint16)
        yield base + noise + np.uint16(t % 50)


def make(d):
    import tifffile
    os.makedirs(d, exist_ok=True)
    for name, kw in (("plain.tif", {}), ("zlib.tif", {"compression": "zlib", "compressionargs": {"level": 1}})):
        p = os.path.join(d, name)
        if os.path.exists(p):
            continue
        t = time.time()
        tifffile.imwrite(p + ".part", frames(), shape=(T, Y, X), dtype=np.uint16, bigtiff=True,
                         imagej=False, metadata={"axes": "TYX"}, **kw)
        os.replace(p + ".part", p)
        print(name, os.path.getsize(p) / 1e9, "GB written in", round(time.time() - t, 1), "s")


def rss_kb():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith("VmRSS"))


def one(path, plugin):
    import napari
    viewer = napari.Viewer(show=False)
    from qtpy.QtWidgets import QApplication
    QApplication.processEvents()
    peak0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss0 = rss_kb()
    t0 = time.perf_counter()
    (layer,) = viewer.open(path, plugin=plugin)
    t_open = time.perf_counter() - t0
    layer.refresh()
    view = np.asarray(layer._slice.image.view)  # the frame napari shows
    QApplication.processEvents()
    t_first = time.perf_counter() - t0
    t1 = time.perf_counter()
    viewer.dims.set_point(0, T // 2)
    layer.refresh()
    mid = np.asarray(layer._slice.image.view)
    t_mid = time.perf_counter() - t1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = dict(plugin=plugin, file=os.path.basename(path), open_s=t_open, first_frame_s=t_first,
               step_to_mid_s=t_mid, peak_rss_growth_mb=(max(peak, peak0) - rss0) / 1024,
               rss_after_mb=(rss_kb() - rss0) / 1024, data_type=type(layer.data).__name__,
               shape=list(layer.data.shape), view_mean=float(view.mean()), mid_mean=float(mid.mean()))
    print(json.dumps(out))
    viewer.close()


def run(d, repeats):
    env = dict(os.environ)
    rows = []
    for rep in range(repeats):
        for name in ("plain.tif", "zlib.tif"):
            for plugin in ("napari-catune", "napari"):
                r = subprocess.run([sys.executable, __file__, "one", os.path.join(d, name), plugin],
                                   capture_output=True, text=True, env=env)
                line = [l for l in r.stdout.splitlines() if l.startswith("{")]
                if not line:
                    print(r.stdout, r.stderr[-3000:]); continue
                row = json.loads(line[0]); row["rep"] = rep
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("\nfile       rep  reader          open s  first-frame s  mid-step s  peak RSS growth MB")
    for r in rows:
        print(f"{r['file']:10s} {r['rep']:3d}  {r['plugin']:14s} {r['open_s']:7.2f} {r['first_frame_s']:13.2f}"
              f" {r['step_to_mid_s']:11.3f} {r['peak_rss_growth_mb']:18.0f}")
    print("\nratios builtin/ours (same rep):")
    for rep in range(repeats):
        for name in ("plain.tif", "zlib.tif"):
            o = next(r for r in rows if r["rep"] == rep and r["file"] == name and r["plugin"] == "napari-catune")
            b = next(r for r in rows if r["rep"] == rep and r["file"] == name and r["plugin"] == "napari")
            print(f"{name} rep {rep}: first-frame time x{b['first_frame_s'] / o['first_frame_s']:.1f}, "
                  f"peak RSS growth x{b['peak_rss_growth_mb'] / max(o['peak_rss_growth_mb'], 1):.1f}")
    json.dump(rows, open(os.path.join(d, "results.json"), "w"), indent=1)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "make":
        make(sys.argv[2])
    elif cmd == "one":
        one(sys.argv[2], sys.argv[3])
    else:
        run(sys.argv[2], int(sys.argv[3]))
