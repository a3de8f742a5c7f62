"""Reader for VideoPose3D's Human3.6M ``.npz`` files, so a user with Human3.6M can train on it.

Poselift ships no Human3.6M data; this module reads the two files that VideoPose3D's
data-preparation scripts produce from the licensed dataset:

``data_3d_h36m.npz``
    key ``positions_3d``: a pickled dict ``subject -> action -> (T, 32, 3)`` float array of
    world joint positions in **metres** (the full 32-joint H36M skeleton; the 17 joints used
    by the model are :data:`H36M_32_TO_17`). A ``(T, 17, 3)`` array is taken as already reduced.
``data_2d_h36m_<detector>.npz``
    key ``positions_2d``: ``subject -> action -> [4 arrays (T, 17, 2 or 3)]`` in **pixels**, one
    per camera in the order of :data:`H36M_INTRINSICS` (a third column is a detector confidence);
    key ``metadata``: dict with ``layout_name``, ``num_joints`` and ``keypoints_symmetry``.
    Layout ``h36m`` is used as is; layout ``coco`` (the Detectron COCO detections) is mapped
    to H36M-17 with :data:`model.skeleton.COCO17`.

Security
--------
These files store Python objects (dicts, lists), which numpy can only load with
``allow_pickle=True``, and unpickling can run arbitrary code. This reader never calls
``np.load(allow_pickle=True)``: it checks the zip members are exactly the expected keys,
that each holds a 0-d object array, and then unpickles with a restricted unpickler that only
resolves the numpy array/dtype constructors; anything else (a function, a class, ``os.system``)
is refused with :class:`H36MFormatError` before it can run. Still, read only files you trust.

Frame counts
------------
Some Human3.6M videos have a few more frames than the motion capture, so a 2D sequence may
be *longer* than its 3D sequence: like VideoPose3D, the 2D is then trimmed to the 3D length
(its first frames kept). A 2D sequence *shorter* than the 3D is an error.

Cameras
-------
The public Human3.6M calibration: per-camera intrinsics (the same for every subject) and per
subject, per camera, extrinsics as an orientation quaternion ``(w, x, y, z)`` that rotates
camera coordinates into world coordinates, and the camera centre in world coordinates
(millimetres in the source, metres here). Only subjects S1, S5, S6, S7, S8, S9 and S11 have
published extrinsics (and 3D); any other subject is an error.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import numpy as np

from poselift.model.skeleton import COCO17

__all__ = [
    "H36MFormatError",
    "H36MTake",
    "H36M_32_TO_17",
    "H36M_CAMERA_IDS",
    "H36M_EXTRINSICS",
    "H36M_INTRINSICS",
    "H36M_SUBJECTS",
    "camera_parameters",
    "camera_to_world",
    "load_videopose3d",
    "project_to_pixels",
    "quaternion_rotate",
    "read_npz_objects",
    "world_to_camera",
]

PathLike = Union[str, Path]

#: Indices of the 17 model joints (H36M-17 order, see ``model.skeleton``) in the 32-joint skeleton.
H36M_32_TO_17: tuple[int, ...] = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)

H36M_CAMERA_IDS: tuple[str, ...] = ("54138969", "55011271", "58860488", "60457274")

#: Per-camera intrinsics (shared by all subjects): image size (pixels), principal point
#: ``center`` (pixels), ``focal_length`` (pixels), ``radial_distortion`` (k1, k2, k3) and
#: ``tangential_distortion`` (p1, p2), both for normalised image coordinates.
H36M_INTRINSICS: tuple[dict[str, Any], ...] = (
    {"id": "54138969", "res_w": 1000, "res_h": 1002,
     "center": (512.54150390625, 515.4514770507812),
     "focal_length": (1145.0494384765625, 1143.7811279296875),
     "radial_distortion": (-0.20709891617298126, 0.24777518212795258, -0.0030751503072679043),
     "tangential_distortion": (-0.0009756988729350269, -0.00142447161488235)},
    {"id": "55011271", "res_w": 1000, "res_h": 1000,
     "center": (508.8486328125, 508.0649108886719),
     "focal_length": (1149.6756591796875, 1147.5916748046875),
     "radial_distortion": (-0.1942136287689209, 0.2404085397720337, 0.006819975562393665),
     "tangential_distortion": (-0.0016190266469493508, -0.0027408944442868233)},
    {"id": "58860488", "res_w": 1000, "res_h": 1000,
     "center": (519.8158569335938, 501.40264892578125),
     "focal_length": (1149.1407470703125, 1148.7989501953125),
     "radial_distortion": (-0.2083381861448288, 0.25548800826072693, -0.0024604974314570427),
     "tangential_distortion": (0.0014843869721516967, -0.0007599993259645998)},
    {"id": "60457274", "res_w": 1000, "res_h": 1002,
     "center": (514.9682006835938, 501.88201904296875),
     "focal_length": (1145.5113525390625, 1144.77392578125),
     "radial_distortion": (-0.198384091258049, 0.21832367777824402, -0.008947807364165783),
     "tangential_distortion": (-0.0005872055771760643, -0.0018133620033040643)},
)

#: subject -> 4 cameras of (orientation quaternion (w, x, y, z) camera->world,
#: camera centre in world coordinates in **millimetres**, as published).
_EXTRINSICS_MM: dict[str, tuple[tuple[tuple[float, ...], tuple[float, ...]], ...]] = {
    "S1": (
        ((0.1407056450843811, -0.1500701755285263, -0.755240797996521, 0.6223280429840088),
         (1841.1070556640625, 4955.28466796875, 1563.4454345703125)),
        ((0.6157187819480896, -0.764836311340332, -0.14833825826644897, 0.11794740706682205),
         (1761.278564453125, -5078.0068359375, 1606.2650146484375)),
        ((0.14651472866535187, -0.14647851884365082, 0.7653023600578308, -0.6094175577163696),
         (-1846.7777099609375, 5215.04638671875, 1491.972412109375)),
        ((0.5834008455276489, -0.7853162288665771, 0.14548823237419128, -0.14749594032764435),
         (-1794.7896728515625, -3722.698974609375, 1574.8927001953125)),
    ),
    "S5": (
        ((0.1467377245426178, -0.162370964884758, -0.7551892995834351, 0.6178938746452332),
         (2097.3916015625, 4880.94482421875, 1605.732421875)),
        ((0.6159758567810059, -0.7626792192459106, -0.15728192031383514, 0.1189815029501915),
         (2031.7008056640625, -5167.93310546875, 1612.923095703125)),
        ((0.14291371405124664, -0.12907841801643372, 0.7678384780883789, -0.6110143065452576),
         (-1620.5948486328125, 5171.65869140625, 1496.43701171875)),
        ((0.5920479893684387, -0.7814217805862427, 0.1274748593568802, -0.15036417543888092),
         (-1637.1737060546875, -3867.3173828125, 1547.033203125)),
    ),
    "S6": (
        ((0.1337897777557373, -0.15692396461963654, -0.7571090459823608, 0.6198879480361938),
         (1935.4517822265625, 4950.24560546875, 1618.0838623046875)),
        ((0.6147197484970093, -0.7628812789916992, -0.16174767911434174, 0.11819244921207428),
         (1969.803955078125, -5128.73876953125, 1632.77880859375)),
        ((0.1529948115348816, -0.13529130816459656, 0.7646096348762512, -0.6112781167030334),
         (-1769.596435546875, 5185.361328125, 1476.993408203125)),
        ((0.5916101336479187, -0.7804774045944214, 0.12832270562648773, -0.1561593860387802),
         (-1721.668701171875, -3884.13134765625, 1540.4879150390625)),
    ),
    "S7": (
        ((0.1435241848230362, -0.1631336808204651, -0.7548328638076782, 0.6188824772834778),
         (1974.512939453125, 4926.3544921875, 1597.8326416015625)),
        ((0.6141672730445862, -0.7638262510299683, -0.1596645563840866, 0.1177929937839508),
         (1937.0584716796875, -5119.7900390625, 1631.5665283203125)),
        ((0.14550060033798218, -0.12874816358089447, 0.7660516500473022, -0.6127139329910278),
         (-1741.8111572265625, 5208.24951171875, 1464.8245849609375)),
        ((0.5912848114967346, -0.7821764349937439, 0.12445473670959473, -0.15196487307548523),
         (-1734.7105712890625, -3832.42138671875, 1548.5830078125)),
    ),
    "S8": (
        ((0.14110587537288666, -0.15589867532253265, -0.7561917304992676, 0.619644045829773),
         (2150.65185546875, 4896.1611328125, 1611.9046630859375)),
        ((0.6169601678848267, -0.7647668123245239, -0.14846350252628326, 0.11158157885074615),
         (2219.965576171875, -5148.453125, 1613.0440673828125)),
        ((0.1471444070339203, -0.13377119600772858, 0.7670128345489502, -0.6100369691848755),
         (-1571.2215576171875, 5137.0185546875, 1498.1761474609375)),
        ((0.5927824378013611, -0.7825870513916016, 0.12147816270589828, -0.14631995558738708),
         (-1476.913330078125, -3896.7412109375, 1547.97216796875)),
    ),
    "S9": (
        ((0.15540587902069092, -0.15548215806484222, -0.7532095313072205, 0.6199594736099243),
         (2044.45849609375, 4935.1171875, 1481.2275390625)),
        ((0.618784487247467, -0.7634735107421875, -0.14132238924503326, 0.11933968216180801),
         (1990.959716796875, -5123.810546875, 1568.8048095703125)),
        ((0.13357827067375183, -0.1367100477218628, 0.7689454555511475, -0.6100738644599915),
         (-1670.9921875, 5211.98583984375, 1528.387939453125)),
        ((0.5879399180412292, -0.7823407053947449, 0.1427614390850067, -0.14794869720935822),
         (-1696.04345703125, -3827.099853515625, 1591.4127197265625)),
    ),
    "S11": (
        ((0.15232472121715546, -0.15442320704460144, -0.7547563314437866, 0.6191070079803467),
         (2098.440185546875, 4926.5546875, 1500.278564453125)),
        ((0.6189449429512024, -0.7600917220115662, -0.15300633013248444, 0.1255258321762085),
         (2083.182373046875, -4912.1728515625, 1561.07861328125)),
        ((0.14943228662014008, -0.15650227665901184, 0.7681233882904053, -0.6026304364204407),
         (-1609.8153076171875, 5177.3359375, 1537.896728515625)),
        ((0.5894251465797424, -0.7818877100944519, 0.13991211354732513, -0.14715361595153809),
         (-1590.738037109375, -3854.1689453125, 1578.017578125)),
    ),
}

#: subject -> 4 dicts ``{"orientation": (w, x, y, z), "translation": camera centre (metres)}``.
H36M_EXTRINSICS: dict[str, tuple[dict[str, tuple[float, ...]], ...]] = {
    subject: tuple({"orientation": tuple(q), "translation": tuple(v / 1000.0 for v in t_mm)}
                   for q, t_mm in cams)
    for subject, cams in _EXTRINSICS_MM.items()
}

H36M_SUBJECTS: tuple[str, ...] = tuple(_EXTRINSICS_MM)


class H36MFormatError(ValueError):
    """A VideoPose3D ``.npz`` file is unsafe, malformed or inconsistent (message names file and key)."""


# --------------------------------------------------------------------------------------------
# quaternions and cameras
# --------------------------------------------------------------------------------------------


def quaternion_rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate 3-vectors ``v`` (..., 3) by the unit quaternion ``q = (w, x, y, z)`` (4,) or (..., 4).

    Computes ``q v q*`` without building quaternion products:
    ``v' = v + 2 w (u x v) + 2 u x (u x v)`` with ``u = (x, y, z)``. ``q`` is normalised first.
    """
    q = np.asarray(q, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(norm < 1e-12):
        raise ValueError("quaternion_rotate: zero quaternion")
    q = q / norm
    w, u = q[..., :1], q[..., 1:]
    u = np.broadcast_to(u, v.shape)
    uv = np.cross(u, v)
    return v + 2.0 * w * uv + 2.0 * np.cross(u, uv)


def _conjugate(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    return np.concatenate([q[..., :1], -q[..., 1:]], axis=-1)


def world_to_camera(points_world: np.ndarray, orientation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """World (..., 3) metres -> camera frame (..., 3) metres: ``R^T (X - c)``.

    ``orientation``: quaternion (w, x, y, z) rotating camera axes into world axes;
    ``translation``: camera centre ``c`` in world coordinates, metres. The camera frame has
    x right, y down, z forward (depth), as the projection expects.
    """
    return quaternion_rotate(_conjugate(orientation), np.asarray(points_world, np.float64) - np.asarray(translation))


def camera_to_world(points_camera: np.ndarray, orientation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """Inverse of :func:`world_to_camera`: camera frame (..., 3) metres -> world (..., 3) metres."""
    return quaternion_rotate(orientation, points_camera) + np.asarray(translation, dtype=np.float64)


def camera_parameters(subject: str, camera_index: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(intrinsics, extrinsics)`` for one Human3.6M subject and camera (0..3).

    ``intrinsics``: copy of :data:`H36M_INTRINSICS` ``[camera_index]`` (pixels);
    ``extrinsics``: ``{"orientation": (w, x, y, z), "translation": camera centre in metres}``.
    Raises :class:`KeyError` for a subject without published calibration.
    """
    if subject not in H36M_EXTRINSICS:
        raise KeyError(f"unknown Human3.6M subject {subject!r}; calibrated subjects: {', '.join(H36M_SUBJECTS)}")
    if not 0 <= camera_index < 4:
        raise IndexError(f"camera_index must be 0..3, got {camera_index}")
    return dict(H36M_INTRINSICS[camera_index]), dict(H36M_EXTRINSICS[subject][camera_index])


def project_to_pixels(points_camera: np.ndarray, intrinsics: dict[str, Any]) -> np.ndarray:
    """Camera-frame points (..., 3) metres -> pixels (..., 2) with the paper's distortion model.

    With ``(x, y) = (X / Z, Y / Z)``, ``r^2 = x^2 + y^2``, the distorted normalised point is
    ``(x, y) * (1 + k1 r^2 + k2 r^4 + k3 r^6 + p1 x + p2 y) + (p1, p2) r^2`` (the convention
    of Pavllo et al.'s projection; it differs from OpenCV's Brown-Conrady tangential term only
    at second order in p, which is ~1e-3 here), then ``pixel = f * point + c``.
    Points behind the camera (Z <= 0) give NaN.
    """
    X = np.asarray(points_camera, dtype=np.float64)
    z = X[..., 2:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        xy = np.where(z > 0, X[..., :2] / z, np.nan)
    k = np.asarray(intrinsics["radial_distortion"], dtype=np.float64)
    p = np.asarray(intrinsics["tangential_distortion"], dtype=np.float64)
    f = np.asarray(intrinsics["focal_length"], dtype=np.float64)
    c = np.asarray(intrinsics["center"], dtype=np.float64)
    r2 = (xy ** 2).sum(axis=-1, keepdims=True)
    radial = 1.0 + k[0] * r2 + k[1] * r2 ** 2 + k[2] * r2 ** 3
    tangential = (xy * p).sum(axis=-1, keepdims=True)
    distorted = xy * (radial + tangential) + p * r2
    return f * distorted + c


# --------------------------------------------------------------------------------------------
# safe npz reading
# --------------------------------------------------------------------------------------------

# The only globals a VideoPose3D npz pickle needs: rebuilding numpy arrays, dtypes and scalars.
_ALLOWED_GLOBALS = frozenset({
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
})


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file, where: str):
        super().__init__(file)
        self._where = where

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise H36MFormatError(f"{self._where}: refusing to unpickle {module}.{name}: only numpy arrays, "
                                  "dicts and lists are allowed (is this really a VideoPose3D file?)")
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise H36MFormatError(f"{self._where}: refusing persistent ids in pickle")


def read_npz_objects(path: PathLike, keys: Iterable[str]) -> dict[str, Any]:
    """Read a VideoPose3D-style npz whose members are exactly ``keys``, each a pickled 0-d object array.

    Returns ``{key: the stored Python object}``. The zip member names are checked first
    (missing or extra keys are refused), the ``.npy`` headers must declare a 0-d object
    array, and the payload is unpickled with a restricted unpickler (numpy arrays, dtypes,
    scalars and builtin containers only). Raises :class:`H36MFormatError` naming the file
    and key on any problem. Read only trusted files all the same.
    """
    path = Path(path)
    want = list(keys)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise H36MFormatError(f"{path}: not an npz (zip) file") from exc
    out: dict[str, Any] = {}
    with zf:
        names = zf.namelist()
        expected = {k + ".npy" for k in want}
        missing = sorted(expected - set(names))
        extra = sorted(set(names) - expected)
        if missing:
            raise H36MFormatError(f"{path}: missing key(s) {', '.join(m[:-4] for m in missing)} "
                                  f"(found {', '.join(names) or 'nothing'})")
        if extra or len(names) != len(set(names)):
            raise H36MFormatError(f"{path}: unexpected member(s) {', '.join(extra) or '(duplicates)'}; "
                                  f"expected exactly {', '.join(sorted(expected))}")
        for key in want:
            where = f"{path} [{key}]"
            with zf.open(key + ".npy") as raw:  # streamed: the 3D file is a few hundred MB unpacked
                try:
                    version = np.lib.format.read_magic(raw)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(raw)
                    elif version == (2, 0):
                        shape, _, dtype = np.lib.format.read_array_header_2_0(raw)
                    else:
                        raise H36MFormatError(f"{where}: unsupported .npy version {version}")
                except H36MFormatError:
                    raise
                except ValueError as exc:
                    raise H36MFormatError(f"{where}: not a .npy array ({exc})") from exc
                if dtype != np.dtype(object) or shape != ():
                    raise H36MFormatError(f"{where}: expected a pickled dict (0-d object array), "
                                          f"got dtype {dtype} shape {shape}")
                try:
                    arr = _NumpyOnlyUnpickler(raw, where).load()
                except H36MFormatError:
                    raise
                except Exception as exc:  # corrupt or truncated pickle stream
                    raise H36MFormatError(f"{where}: cannot read pickled data ({exc})") from exc
            if not isinstance(arr, np.ndarray) or arr.shape != () or arr.dtype != object:
                raise H36MFormatError(f"{where}: expected a 0-d object array")
            out[key] = arr.item()
    return out


# --------------------------------------------------------------------------------------------
# validation and assembly
# --------------------------------------------------------------------------------------------


@dataclass
class H36MTake:
    """One (subject, action, camera) sequence.

    ``keypoints_2d``: (T, 17, 2) pixels in H36M-17 order; ``positions_3d_world``: (T, 17, 3)
    metres, world frame (z up); ``positions_3d_camera``: (T, 17, 3) metres in this camera's
    frame (x right, y down, z depth); ``width`` / ``height``: image size in pixels;
    ``intrinsics``: see :data:`H36M_INTRINSICS`; ``extrinsics``: orientation quaternion
    (w, x, y, z) camera->world and camera centre (metres); ``confidence``: (T, 17) detector
    confidence when the 2D file has a third column, else ``None``.
    """

    subject: str
    action: str
    camera_index: int
    keypoints_2d: np.ndarray
    positions_3d_world: np.ndarray
    positions_3d_camera: np.ndarray
    width: int
    height: int
    intrinsics: dict[str, Any]
    extrinsics: dict[str, Any] = field(default_factory=dict)
    confidence: Optional[np.ndarray] = None

    @property
    def num_frames(self) -> int:
        return int(self.keypoints_2d.shape[0])


def _as_float_array(value: Any, where: str) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
        raise H36MFormatError(f"{where}: expected a numeric numpy array, got {type(value).__name__}"
                              + (f" of dtype {value.dtype}" if isinstance(value, np.ndarray) else ""))
    arr = value.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise H36MFormatError(f"{where}: contains NaN or infinite values")
    return arr


def _check_subject(subject: Any, where: str) -> str:
    if subject not in H36M_EXTRINSICS:
        raise H36MFormatError(f"{where}: unknown subject {subject!r}; Human3.6M subjects with published "
                              f"calibration: {', '.join(H36M_SUBJECTS)}")
    return subject


def _layout_mapper(metadata: Any, where: str):
    if not isinstance(metadata, dict):
        raise H36MFormatError(f"{where}: expected a dict, got {type(metadata).__name__}")
    for key in ("layout_name", "num_joints"):
        if key not in metadata:
            raise H36MFormatError(f"{where}: missing entry {key!r}")
    if int(metadata["num_joints"]) != 17:
        raise H36MFormatError(f"{where}: num_joints is {metadata['num_joints']}, expected 17")
    layout = str(metadata["layout_name"]).lower()
    if layout in ("h36m", "h36m17"):
        return None
    if layout in ("coco", "coco17"):
        return COCO17
    raise H36MFormatError(f"{where}: unsupported layout_name {metadata['layout_name']!r} (h36m or coco)")


def load_videopose3d(path_3d: PathLike, path_2d: PathLike,
                     subjects: Optional[Iterable[str]] = None) -> list[H36MTake]:
    """Load VideoPose3D's ``data_3d_h36m.npz`` + ``data_2d_h36m_<detector>.npz`` into takes.

    Returns one :class:`H36MTake` per (subject, action, camera), in the 3D file's subject and
    action order and camera order 0..3. ``subjects`` restricts loading to those subjects
    (e.g. the standard split: train S1, S5, S6, S7, S8; test S9, S11).

    Every (subject, action) of the 3D file must be in the 2D file with 4 cameras; 2D entries
    without 3D are ignored (but every subject in either file must be a calibrated one). A 2D sequence longer than the 3D one is trimmed to the 3D length
    (as VideoPose3D does, some videos have extra frames); a shorter one is an error.

    Raises :class:`H36MFormatError` (a ``ValueError``) naming the file and key for an unsafe
    or malformed file, a missing key, wrong shapes, NaN/inf, a frame-count mismatch or an
    unknown subject; :class:`FileNotFoundError` for a missing file. Only read trusted files.
    """
    path_3d, path_2d = Path(path_3d), Path(path_2d)
    pos3d = read_npz_objects(path_3d, ["positions_3d"])["positions_3d"]
    data2d = read_npz_objects(path_2d, ["positions_2d", "metadata"])
    pos2d, metadata = data2d["positions_2d"], data2d["metadata"]
    mapper = _layout_mapper(metadata, f"{path_2d} [metadata]")

    for obj, where in ((pos3d, f"{path_3d} [positions_3d]"), (pos2d, f"{path_2d} [positions_2d]")):
        if not isinstance(obj, dict):
            raise H36MFormatError(f"{where}: expected a dict subject -> action -> data, got {type(obj).__name__}")
        for subject, actions in obj.items():
            _check_subject(subject, where)
            if not isinstance(actions, dict):
                raise H36MFormatError(f"{where}[{subject!r}]: expected a dict action -> data, "
                                      f"got {type(actions).__name__}")

    wanted = None if subjects is None else list(subjects)
    if wanted is not None:
        for s in wanted:
            _check_subject(s, "subjects argument")
            if s not in pos3d:
                raise H36MFormatError(f"{path_3d} [positions_3d]: subject {s!r} not in file "
                                      f"(has {', '.join(map(str, pos3d))})")

    takes: list[H36MTake] = []
    for subject, actions in pos3d.items():
        if wanted is not None and subject not in wanted:
            continue
        if subject not in pos2d:
            raise H36MFormatError(f"{path_2d} [positions_2d]: subject {subject!r} (present in {path_3d}) is missing")
        for action, world in actions.items():
            where3 = f"{path_3d} [positions_3d][{subject!r}][{action!r}]"
            world = _as_float_array(world, where3)
            if world.ndim != 3 or world.shape[1] not in (32, 17) or world.shape[2] != 3:
                raise H36MFormatError(f"{where3}: expected shape (T, 32, 3) (or (T, 17, 3)), got {world.shape}")
            if world.shape[0] < 1:
                raise H36MFormatError(f"{where3}: empty sequence")
            if world.shape[1] == 32:
                world = world[:, list(H36M_32_TO_17)]
            n3 = world.shape[0]

            where2 = f"{path_2d} [positions_2d][{subject!r}][{action!r}]"
            if action not in pos2d[subject]:
                raise H36MFormatError(f"{where2}: missing (the action is in {path_3d})")
            cams = pos2d[subject][action]
            if not isinstance(cams, (list, tuple)) or len(cams) != 4:
                raise H36MFormatError(f"{where2}: expected a list of 4 per-camera arrays, got "
                                      f"{len(cams) if isinstance(cams, (list, tuple)) else type(cams).__name__}")
            for cam_idx, kp in enumerate(cams):
                wherec = f"{where2}[{cam_idx}]"
                kp = _as_float_array(kp, wherec)
                if kp.ndim != 3 or kp.shape[1] != 17 or kp.shape[2] not in (2, 3):
                    raise H36MFormatError(f"{wherec}: expected shape (T, 17, 2) or (T, 17, 3), got {kp.shape}")
                if kp.shape[0] < n3:
                    raise H36MFormatError(f"{wherec}: {kp.shape[0]} 2D frames but {n3} 3D frames in {where3}; "
                                          "2D must have at least as many frames as 3D")
                kp = kp[:n3]  # trim extra video frames, as VideoPose3D does
                conf = kp[..., 2] if kp.shape[2] == 3 else None
                xy = kp[..., :2]
                if mapper is not None:
                    xy = mapper.to_h36m(xy)
                    if conf is not None:
                        conf = np.stack([conf[:, mapper.source_joints(j)].min(axis=1) for j in range(17)], axis=1)
                intrinsics, extrinsics = camera_parameters(subject, cam_idx)
                camera = world_to_camera(world, extrinsics["orientation"], extrinsics["translation"])
                takes.append(H36MTake(
                    subject=subject, action=action, camera_index=cam_idx,
                    keypoints_2d=xy.astype(np.float32),
                    positions_3d_world=world.astype(np.float32),
                    positions_3d_camera=camera.astype(np.float32),
                    width=int(intrinsics["res_w"]), height=int(intrinsics["res_h"]),
                    intrinsics=intrinsics, extrinsics=extrinsics,
                    confidence=None if conf is None else conf.astype(np.float32),
                ))
    return takes
