"""Render 2D input beside the lifted 3D skeleton as an MP4 (ffmpeg) or GIF (pillow).

If ffmpeg is not installed, an ``.mp4`` request falls back to a GIF next to it; the
function returns the path actually written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from poselift.model.skeleton import H36M_LEFT, H36M_PARENTS

_BONES = [(j, p) for j, p in enumerate(H36M_PARENTS) if p >= 0]


def _bone_color(j: int) -> str:
    return "tab:red" if j in H36M_LEFT else ("tab:blue" if j in (1, 2, 3, 14, 15, 16) else "0.2")


def _fill_nan_rows(a: np.ndarray, default: np.ndarray) -> np.ndarray:
    """Replace NaN rows by the previous finite row (or the next one, or ``default``)."""
    out = a.copy()
    good = np.nonzero(~np.isnan(a).any(axis=1))[0]
    for i in range(len(a)):
        if np.isnan(out[i]).any():
            if len(good) == 0:
                out[i] = default
            else:
                before = good[good < i]
                out[i] = a[before[-1]] if len(before) else a[good[0]]
    return out


def ffmpeg_available() -> bool:
    from matplotlib import animation

    return animation.writers.is_available("ffmpeg")


def render_animation(out: str | Path, keypoints2d: np.ndarray, poses3d: np.ndarray, *, width: int, height: int,
                     fps: float = 30.0, ground_truth: np.ndarray | None = None, max_frames: int | None = 150,
                     title: str = "", size_px: int = 640, image_frames: list[np.ndarray] | None = None) -> Path:
    """Write an animation of (T, 17, 2) pixel keypoints beside (T, 17, 3) poses in metres
    (camera frame: x right, y down, z forward; drawn with "up" = -y).

    ``max_frames``: at most this many frames, evenly subsampled (the playback rate is
    lowered to keep real time). ``image_frames``: optional RGB images under the 2D panel.
    Returns the written path (``.gif`` when ``.mp4`` was asked for but ffmpeg is missing).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib import animation

    out = Path(out)
    kp = np.asarray(keypoints2d, dtype=np.float64)
    p3 = np.asarray(poses3d, dtype=np.float64)
    T = min(len(kp), len(p3))
    if T == 0:
        raise ValueError("nothing to render: no frames")
    step = max(1, int(np.ceil(T / max_frames))) if max_frames else 1
    idx = np.arange(0, T, step)
    play_fps = max(1.0, fps / step)
    want_mp4 = out.suffix.lower() == ".mp4"
    if want_mp4 and not ffmpeg_available():
        out = out.with_suffix(".gif")
        print(f"ffmpeg not found: writing a GIF instead ({out})")
    elif out.suffix.lower() not in (".mp4", ".gif"):
        raise ValueError(f"animation file must end in .mp4 or .gif, got {out.name}")
    out.parent.mkdir(parents=True, exist_ok=True)

    dpi = 80
    fig = plt.figure(figsize=(2 * size_px / dpi / 2, size_px / dpi / 2), dpi=dpi)
    ax2 = fig.add_subplot(1, 2, 1)
    ax3 = fig.add_subplot(1, 2, 2, projection="3d")
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.03, top=0.88, wspace=0.05)
    if title:
        fig.suptitle(title, fontsize=9)
    # The 2D panel follows the person (a window of fixed size centred on each frame's
    # keypoints), unless images are shown underneath.
    centres = None
    if image_frames is None:
        ok = np.isfinite(kp).all(axis=-1)  # (T, 17)
        lo = np.where(ok[..., None], kp, np.inf).min(axis=1)
        hi = np.where(ok[..., None], kp, -np.inf).max(axis=1)
        have = ok.any(axis=1)
        if have.any():
            half = float(np.max((hi - lo)[have])) * 0.6 + 10.0
            centres = np.where(have[:, None], (lo + hi) / 2, np.nan)
            centres = _fill_nan_rows(centres, np.array([width / 2, height / 2]))
    if centres is None:
        ax2.set_xlim(0, width)
        ax2.set_ylim(height, 0)
    ax2.set_aspect("equal")
    ax2.set_title(f"2D input (pixels of a {width}x{height} image)", fontsize=8)
    ax2.set_xticks([])
    ax2.set_yticks([])
    image_artist = ax2.imshow(image_frames[0], extent=(0, width, height, 0)) if image_frames else None
    lines2 = [ax2.plot([], [], color=_bone_color(j), lw=2)[0] for j, _ in _BONES]
    radius = 1.0
    ax3.set_title("3D (root-relative, axes +-1 m)", fontsize=8)
    ax3.view_init(elev=15.0, azim=-70)
    ax3.set_xlim(-radius, radius)
    ax3.set_ylim(-radius, radius)
    ax3.set_zlim(-radius, radius)
    ax3.set_xlabel("x", fontsize=6)
    ax3.set_ylabel("z (depth)", fontsize=6)
    ax3.set_zlabel("-y (up)", fontsize=6)
    for axis in (ax3.xaxis, ax3.yaxis, ax3.zaxis):  # tick labels cost most of the drawing time
        axis.set_ticklabels([])
    lines3 = [ax3.plot([], [], [], color=_bone_color(j), lw=2)[0] for j, _ in _BONES]
    gt_lines = ([ax3.plot([], [], [], color="0.6", lw=1, ls="--")[0] for _ in _BONES]
                if ground_truth is not None else [])
    text = ax2.text(0.02, 0.02, "", transform=ax2.transAxes, fontsize=7)

    def draw(i: int):
        f = idx[i]
        for line, (j, p) in zip(lines2, _BONES):
            line.set_data([kp[f, j, 0], kp[f, p, 0]], [kp[f, j, 1], kp[f, p, 1]])
        for lines, pose in ((lines3, p3[f]), (gt_lines, None if ground_truth is None else ground_truth[f])):
            if pose is None:
                continue
            for line, (j, p) in zip(lines, _BONES):
                line.set_data_3d([pose[j, 0], pose[p, 0]], [pose[j, 2], pose[p, 2]], [-pose[j, 1], -pose[p, 1]])
        if image_artist is not None:
            image_artist.set_data(image_frames[min(f, len(image_frames) - 1)])
        if centres is not None:
            ax2.set_xlim(centres[f, 0] - half, centres[f, 0] + half)
            ax2.set_ylim(centres[f, 1] + half, centres[f, 1] - half)
        text.set_text(f"frame {f}")
        return [*lines2, *lines3, *gt_lines, text]

    # One draw per frame (FuncAnimation would draw twice); GIFs are assembled with Pillow.
    try:
        if out.suffix.lower() == ".mp4":
            writer = animation.FFMpegWriter(fps=play_fps, bitrate=1800)
            with writer.saving(fig, str(out), dpi):
                for i in range(len(idx)):
                    draw(i)
                    writer.grab_frame()
        else:
            from PIL import Image

            images = []
            for i in range(len(idx)):
                draw(i)
                fig.canvas.draw()
                rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
                images.append(Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=64))
            images[0].save(out, save_all=True, append_images=images[1:], duration=int(round(1000 / play_fps)),
                           loop=0, optimize=False)
    finally:
        plt.close(fig)
    return out


class LivePlot:
    """A live 3D skeleton view for ``poselift listen --plot`` (one figure, redrawn per pose).

    ``update(joints)`` takes (17, 3) metres in the camera frame (drawn with up = -y).
    ``interactive=False`` draws off-screen (tests); ``max_fps`` limits redraws.
    """

    def __init__(self, *, interactive: bool = True, max_fps: float = 30.0) -> None:
        import matplotlib

        if not interactive:
            matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt

        self.plt = plt
        self.interactive = interactive
        self.min_dt = 1.0 / max_fps
        self.last = 0.0
        if interactive:
            plt.ion()
        self.fig = plt.figure(figsize=(5, 5))
        self.ax = self.fig.add_subplot(projection="3d")
        self.ax.set_xlim(-1, 1)
        self.ax.set_ylim(-1, 1)
        self.ax.set_zlim(-1, 1)
        self.ax.set_xlabel("x")
        self.ax.set_ylabel("z (depth)")
        self.ax.set_zlabel("-y (up)")
        self.ax.view_init(elev=15.0, azim=-70)
        self.lines = [self.ax.plot([], [], [], color=_bone_color(j), lw=2)[0] for j, _ in _BONES]
        self.title = self.ax.set_title("")

    def update(self, joints: np.ndarray, label: str = "") -> bool:
        """Redraw with a new pose; returns False when the window was closed."""
        import time

        now = time.monotonic()
        if now - self.last < self.min_dt:
            return True
        self.last = now
        pose = np.asarray(joints, dtype=np.float64)
        for line, (j, p) in zip(self.lines, _BONES):
            line.set_data_3d([pose[j, 0], pose[p, 0]], [pose[j, 2], pose[p, 2]], [-pose[j, 1], -pose[p, 1]])
        self.title.set_text(label)
        if self.interactive:
            if not self.plt.fignum_exists(self.fig.number):
                return False
            self.plt.pause(0.001)
        else:
            self.fig.canvas.draw()
        return True

    def close(self) -> None:
        self.plt.close(self.fig)
