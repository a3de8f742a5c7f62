"""The 3D panel of a rendering, drawn with OpenCV through a virtual pinhole camera.

Why not matplotlib: a matplotlib 3D figure costs 30–60 ms per frame to draw, too slow beside a
live webcam; projecting 17 joints and a few dozen grid lines through a 3x3 rotation and
drawing them with ``cv2.line`` costs about a millisecond.

The scene is in the rig frame (:func:`poselift.model.rig.camera_to_rig`: x right, **y up**,
z towards the real camera, metres). The skeleton stands on a floor grid with its shadow on
it; the virtual camera looks at the body from the front-right and a little above, at a fixed
distance and angle, and its target follows the root smoothly, so a body that moves (a
trajectory root) walks across the grid while staying in view, and leaves a trail of its
root on the floor.

There is no floor estimate in the pipeline, so the floor is placed under the body: it drops
at once to the lowest joint, and rises back slowly (a jump lifts the body off the floor for
a moment instead of dragging the floor along).

The real camera is rarely level (a laptop looks up, a phone on a shelf looks down), and in
its frame an upright person leans by the camera's pitch and roll. So the view keeps an
estimate of the world's up direction: the running mean of the torso's direction (pelvis to
thorax) over the poses so far, then a slow exponential average (people stand and walk
upright far more than they bend or turn upside down). The scene is rotated about the real
camera by the smallest rotation taking that direction to y, as long as the two are within
:attr:`ViewOptions.level_max_tilt` degrees (beyond that the estimate is not trusted and the
camera's own up is used). The floor and the root's trail are levelled with the body.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from poselift.model.rig import camera_to_rig
from poselift.model.skeleton import H36M_LEFT, H36M_PARENTS, H36M_RIGHT

BONES: tuple[tuple[int, int], ...] = tuple((j, p) for j, p in enumerate(H36M_PARENTS) if p >= 0)

# BGR colours, shared with the 2D panel: the person's left warm, right cold, centre light.
LEFT_BGR = (40, 110, 255)
RIGHT_BGR = (255, 160, 40)
CENTRE_BGR = (225, 225, 225)


def joint_color(j: int) -> tuple[int, int, int]:
    return LEFT_BGR if j in H36M_LEFT else RIGHT_BGR if j in H36M_RIGHT else CENTRE_BGR


@dataclass(frozen=True)
class ViewOptions:
    """How the 3D panel looks. Angles in degrees, lengths in metres."""

    azimuth: float = 35.0  # the camera is this far to the right of the real camera's direction
    elevation: float = 14.0  # ... and this far above the target
    distance: float = 3.0  # from the target, at least: a 1.7 m body fills about 70 % of the height
    fov: float = 42.0  # vertical field of view
    margin: float = 0.2  # metres kept free around the body when the camera backs off to fit it
    follow: float = 0.12  # fraction of the way to the body the target moves per frame
    snap: float = 2.0  # a pelvis that moved more than this in one frame jumped (a reset, a bad root): cut to it
    zoom_in: float = 0.03  # fraction of the way back to a closer fitting distance per frame
    floor_rise: float = 0.05  # fraction of the way up to the lowest joint the floor moves per frame, with a root
    floor_rise_rootless: float = 0.3  # ... without one (the body is pinned at its pelvis: keep it grounded)
    grid_step: float = 0.5
    grid_radius: float = 4.0
    trail_frames: int = 150  # root trail length (5 s at 30 fps)
    level: bool = True  # level the scene with the estimated up direction (module docstring)
    level_frames: int = 60  # the up estimate is the plain mean of this many poses, then an average of this time constant
    level_max_tilt: float = 40.0  # degrees: a camera pitched or rolled further is not corrected


class SkeletonView3D:
    """Draws (17, 3) poses into a panel, keeping the follow camera, floor and trail between frames.

    ``draw(panel, joints, root)``: ``joints`` (17, 3) metres in the lifter's camera frame
    (x right, y down, z forward), root-relative or not; ``root`` (3,) the absolute position
    of the joints' origin in the same frame (a trajectory), or None (the body stays in
    place). NaN or None joints draw the empty scene with a "no pose" note.
    """

    def __init__(self, options: ViewOptions | None = None) -> None:
        self.opt = options or ViewOptions()
        self.target: np.ndarray | None = None  # the followed point: the body's centre, smoothed
        self.distance = self.opt.distance
        self.floor: float | None = None
        self._last_root: np.ndarray | None = None  # the previous pose's pelvis (world)
        self.trail: deque[np.ndarray] = deque(maxlen=self.opt.trail_frames)
        self._background: np.ndarray | None = None
        self._up_sum = np.zeros(3)  # running (then exponential) mean of the torso direction, rig frame
        self._up_count = 0
        self._level: np.ndarray = np.eye(3)  # rig frame -> levelled scene (rotation matrix)

    # -------------------------------------------------------------------- level
    def _update_level(self, rig: np.ndarray) -> None:
        """Update the up estimate with one pose (rig frame) and the levelling rotation."""
        from scipy.spatial.transform import Rotation

        o = self.opt
        torso = rig[8] - rig[0]  # pelvis -> thorax
        norm = float(np.linalg.norm(torso))
        if not o.level or not np.isfinite(norm) or norm < 1e-6:
            return
        self._up_count += 1
        weight = 1.0 / min(self._up_count, o.level_frames)
        self._up_sum += weight * (torso / norm - self._up_sum)
        up = self._up_sum / max(float(np.linalg.norm(self._up_sum)), 1e-12)
        y = np.array([0.0, 1.0, 0.0])
        if np.degrees(np.arccos(np.clip(up @ y, -1.0, 1.0))) > o.level_max_tilt:
            self._level = np.eye(3)
            return
        rot, _ = Rotation.align_vectors(y[None], up[None])
        self._level = rot.as_matrix()

    # -------------------------------------------------------------------- camera
    def _camera(self, width: int, height: int) -> tuple[np.ndarray, np.ndarray, float, float, float]:
        """Eye position, world->camera rotation rows (right, up, forward), focal and centre."""
        o = self.opt
        target = np.array([0.0, 0.85, 0.0]) if self.target is None else self.target
        az, el = np.deg2rad(o.azimuth), np.deg2rad(o.elevation)
        eye = target + self.distance * np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])
        fwd = (target - eye) / np.linalg.norm(target - eye)
        right = np.cross(fwd, [0.0, 1.0, 0.0])
        right /= np.linalg.norm(right)
        up = np.cross(right, fwd)
        focal = 0.5 * height / np.tan(np.deg2rad(o.fov) / 2)
        return eye, np.stack([right, up, fwd]), focal, width / 2, height / 2

    @staticmethod
    def _to_camera(points: np.ndarray, eye: np.ndarray, rot: np.ndarray) -> np.ndarray:
        return (points - eye) @ rot.T

    @staticmethod
    def _project(cam: np.ndarray, focal: float, cx: float, cy: float) -> np.ndarray:
        z = np.maximum(cam[..., 2:3], 1e-6)
        return np.concatenate([cx + focal * cam[..., :1] / z, cy - focal * cam[..., 1:2] / z], axis=-1)

    def _segments(self, img: np.ndarray, a: np.ndarray, b: np.ndarray, colors: list[tuple[int, int, int]],
                  thickness: int, cam: tuple) -> None:
        """Draw world segments a[i] -> b[i], clipped at the near plane (vectorised but the draw)."""
        import cv2

        eye, rot, focal, cx, cy = cam
        near = 0.2
        ca, cb = self._to_camera(a, eye, rot), self._to_camera(b, eye, rot)
        behind_a, behind_b = ca[:, 2] < near, cb[:, 2] < near
        with np.errstate(invalid="ignore", divide="ignore"):
            t = ((near - ca[:, 2]) / (cb[:, 2] - ca[:, 2]))[:, None]
            cut = ca + t * (cb - ca)  # where the segment crosses the near plane
        gone = (behind_a & behind_b)[:, None]
        ca = np.where(gone, 1.0, np.where(behind_a[:, None], cut, ca))
        cb = np.where(gone, 1.0, np.where(behind_b[:, None], cut, cb))
        pa = np.clip(np.rint(self._project(ca, focal, cx, cy)), -1e5, 1e5).astype(int).tolist()
        pb = np.clip(np.rint(self._project(cb, focal, cx, cy)), -1e5, 1e5).astype(int).tolist()
        for p, q, color, skip in zip(pa, pb, colors, gone[:, 0].tolist()):
            if not skip:
                cv2.line(img, tuple(p), tuple(q), color, thickness, cv2.LINE_AA)

    # --------------------------------------------------------------------- state
    def _update_state(self, world: np.ndarray | None, has_root: bool) -> None:
        """Floor under the body, target on its centre, distance such that it fits: the
        sphere around the target through the furthest joint (plus a margin) fits in the
        field of view, so no joint is ever clipped; backing off is immediate, closing in slow."""
        o = self.opt
        if world is None:
            return
        lowest, highest = float(world[:, 1].min()), float(world[:, 1].max())
        if self.floor is None or lowest < self.floor:
            self.floor = lowest
        else:
            self.floor += (o.floor_rise if has_root else o.floor_rise_rootless) * (lowest - self.floor)
        centre = np.array([world[0, 0], 0.5 * (self.floor + highest), world[0, 2]])
        jumped = self._last_root is not None and np.linalg.norm(world[0] - self._last_root) > o.snap
        self._last_root = world[0].copy()
        if self.target is None or jumped:
            if self.target is not None:  # a cut: the floor and trail of the old place mean nothing here
                self.floor = lowest
                centre[1] = 0.5 * (lowest + highest)
                self.trail.clear()
            self.target = centre
            self.distance = o.distance
        else:
            self.target = self.target + o.follow * (centre - self.target)
        reach = float(np.max(np.linalg.norm(world - self.target, axis=1))) + o.margin
        fit = max(o.distance, reach / np.sin(np.deg2rad(o.fov) / 2))
        self.distance = fit if fit > self.distance else self.distance + o.zoom_in * (fit - self.distance)

    def _panel_background(self, h: int, w: int) -> np.ndarray:
        if self._background is None or self._background.shape[:2] != (h, w):
            top, bottom = np.array([58, 44, 40.0]), np.array([24, 22, 22.0])  # BGR, dark blue-grey sky
            t = np.linspace(0.0, 1.0, h)[:, None]
            column = (top * (1 - t) + bottom * t).astype(np.uint8)
            self._background = np.ascontiguousarray(np.broadcast_to(column[:, None, :], (h, w, 3)))
        return self._background

    # ---------------------------------------------------------------------- draw
    def draw(self, panel: np.ndarray, joints: np.ndarray | None, root: np.ndarray | None = None, *,
             ghost: np.ndarray | None = None, label: str = "") -> np.ndarray:
        """Draw into ``panel`` (H, W, 3) uint8 in place and return it. ``ghost``: another
        (17, 3) pose in the same frame as ``joints`` (e.g. ground truth), drawn thin and grey
        at the same root."""
        import cv2

        h, w = panel.shape[:2]
        panel[:] = self._panel_background(h, w)
        world = None
        if joints is not None:
            j = np.asarray(joints, dtype=np.float64)
            r = None if root is None else np.asarray(root, dtype=np.float64)
            if j.shape == (17, 3) and np.isfinite(j).all() and (r is None or np.isfinite(r).all()):
                world = camera_to_rig(j + (0.0 if r is None else r))
                self._update_level(world)
                world = world @ self._level.T  # rotated about the real camera (the rig origin)
        self._update_state(world, root is not None)
        if world is not None and root is not None:
            self.trail.append(world[0].copy())
        cam = self._camera(w, h)
        scale = h / 720.0
        self._draw_grid(panel, cam, scale)
        floor = 0.0 if self.floor is None else self.floor
        if len(self.trail) > 1:
            self._draw_trail(panel, floor, cam, scale)
        if world is not None:
            if ghost is not None and np.isfinite(ghost).all():
                g = camera_to_rig(np.asarray(ghost, dtype=np.float64)) @ self._level.T
                g = g - g[0] + world[0]
                self._segments(panel, g[[c for c, _ in BONES]], g[[p for _, p in BONES]],
                               [(150, 150, 150)] * len(BONES), max(1, int(2 * scale)), cam)
            self._draw_body(panel, world, floor, cam, scale)
        else:
            _text(panel, "no pose", (w // 2 - int(60 * scale), h // 2), scale * 1.0, (200, 200, 200))
        _text(panel, f"3D  (grid {self.opt.grid_step:g} m, y up{', root trail' if root is not None else ''})",
              (int(12 * scale), h - int(14 * scale)), 0.55 * scale, (200, 200, 200))
        if label:
            _text(panel, label, (int(12 * scale), int(30 * scale)), 0.7 * scale, (255, 255, 255))
        return panel

    def _draw_trail(self, img: np.ndarray, floor: float, cam: tuple, scale: float) -> None:
        """The root's path on the floor, fading with age: a few polylines, one colour each
        (a line per segment cost more than the rest of the panel)."""
        import cv2

        eye, rot, focal, cx, cy = cam
        pts = np.array(self.trail)
        pts[:, 1] = floor + 0.005
        c = self._to_camera(pts, eye, rot)
        ahead = c[:, 2] > 0.2
        px = np.clip(np.rint(self._project(c, focal, cx, cy)), -1e5, 1e5).astype(np.int32)
        chunks = 8
        bounds = np.linspace(0, len(pts) - 1, chunks + 1).round().astype(int)
        for k in range(chunks):
            lo, hi = bounds[k], bounds[k + 1]
            if hi <= lo or not ahead[lo:hi + 1].all():
                continue  # a part of the trail behind the camera is left out
            color = _mix((60, 60, 60), (0, 215, 255), (k + 1) / chunks)
            cv2.polylines(img, [px[lo:hi + 1]], False, color, max(2, int(3 * scale)), cv2.LINE_AA)

    def _draw_grid(self, img: np.ndarray, cam: tuple, scale: float) -> None:
        o = self.opt
        floor = 0.0 if self.floor is None else self.floor
        tx, tz = (0.0, 0.0) if self.target is None else self.target[[0, 2]]
        # Snap to the grid, so the lines stay put in the world while the camera follows.
        cx, cz = np.round(tx / o.grid_step) * o.grid_step, np.round(tz / o.grid_step) * o.grid_step
        ks = np.arange(-o.grid_radius, o.grid_radius + 1e-9, o.grid_step)
        a, b, colors = [], [], []
        for k in ks:
            shade = int(110 - 60 * abs(k) / o.grid_radius)
            color = (shade, shade, shade)
            a += [[cx + k, floor, cz - o.grid_radius], [cx - o.grid_radius, floor, cz + k]]
            b += [[cx + k, floor, cz + o.grid_radius], [cx + o.grid_radius, floor, cz + k]]
            colors += [color, color]
        self._segments(img, np.array(a), np.array(b), colors, 1, cam)

    def _draw_body(self, img: np.ndarray, world: np.ndarray, floor: float, cam: tuple, scale: float) -> None:
        import cv2

        eye, rot, focal, cx, cy = cam
        shadow = world.copy()
        shadow[:, 1] = floor + 0.002
        self._segments(img, shadow[[c for c, _ in BONES]], shadow[[p for _, p in BONES]],
                       [(14, 14, 14)] * len(BONES), max(2, int(5 * scale)), cam)
        # The camera keeps every joint inside a sphere it sees whole (_update_state), so the
        # body is always in front of it.
        c = self._to_camera(world, eye, rot)
        px = [_pt(q) for q in self._project(c, focal, cx, cy).tolist()]
        depth = c[:, 2]
        radius_m = 0.02  # bones drawn about 4 cm thick, thinner when further away
        # Painter's order over bones and joints together: far things first, a joint just
        # after the bones that end at it.
        items = [(-(depth[j] + depth[p]) / 2, 0, j, p) for j, p in BONES]
        items += [(-depth[j] + 1e-3, 1, j, j) for j in range(len(world))]
        for d, kind, j, p in sorted(items):
            if kind == 0:
                t = max(2, int(round(2 * radius_m * focal / -d)))
                cv2.line(img, px[j], px[p], (20, 20, 20), t + 2, cv2.LINE_AA)
                cv2.line(img, px[j], px[p], joint_color(j), t, cv2.LINE_AA)
            else:
                r = max(2, int(round(1.25 * radius_m * focal / depth[j])))
                cv2.circle(img, px[j], r + 1, (20, 20, 20), -1, cv2.LINE_AA)
                cv2.circle(img, px[j], r, joint_color(j), -1, cv2.LINE_AA)


# --------------------------------------------------------------------------- helpers
def _pt(p) -> tuple[int, int]:
    """A pixel for OpenCV, clamped so a far-off point cannot overflow its int."""
    return int(round(max(-1e5, min(1e5, float(p[0]))))), int(round(max(-1e5, min(1e5, float(p[1])))))


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))  # type: ignore[return-value]


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, color: tuple[int, int, int]) -> None:
    """Text with a dark outline, readable on any background."""
    import cv2

    thick = max(1, int(round(2 * scale)))
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)
