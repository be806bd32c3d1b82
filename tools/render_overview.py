"""Draws the overview's key series (written by scripts/check-dashboards-live with
SHARDLINE_RENDER_DATA) as one PNG in Grafana's dark style: python3 render_overview.py
DATA.json OUT.png. Run by scripts/render-overview."""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LEGEND_LABELS = ("legend", "event_type", "consumer", "stream", "kind")


def legend(labels):
    for key in LEGEND_LABELS:
        if key in labels:
            return labels[key]
    return "gateway publish"


def main(source, target):
    panels = json.loads(open(source).read())
    plt.style.use("dark_background")
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 3.2 * len(panels)), sharex=True)
    fig.patch.set_facecolor("#111217")
    for ax, (title, series) in zip(axes, panels.items()):
        ax.set_facecolor("#181b1f")
        ax.set_title(title, loc="left", fontsize=11, color="#ccccdc")
        ax.grid(color="#2c3235", linewidth=0.6)
        if not series:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        for s in sorted(series, key=lambda s: legend(s["labels"])):
            xs = [p[0] for p in s["points"]]
            ys = [p[1] for p in s["points"]]
            ax.plot(xs, ys, linewidth=1.4, label=legend(s["labels"]))
        if series:
            ax.legend(loc="upper left", fontsize=8, ncol=3, framealpha=0.4)
        ax.set_ylim(bottom=0, top=max(1.0, ax.get_ylim()[1]))
    axes[-1].set_xlabel("seconds since the stack started (simulator at 200 events/s)")
    fig.suptitle("Shardline overview: live run (Prometheus, 1 s scrapes)", color="#ccccdc")
    fig.tight_layout()
    fig.savefig(target, dpi=90, facecolor=fig.get_facecolor())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
