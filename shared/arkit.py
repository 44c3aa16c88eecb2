"""The 52 ARKit face blendshape names and the mapping from an avatar's shape-key names to them.

Pure Python (no numpy, no bpy, no torch), so the Blender extension, the wire
contracts and the backend all map names the same way.

ARKit names are camelCase with ``Left``/``Right`` naming the *character's* side
(``eyeBlinkLeft`` closes the character's left eye). Avatars spell them in many
ways; :func:`arkit_name` understands

    eyeBlinkLeft              the ARKit spelling itself
    EyeBlinkLeft, eye_blink_left, EYE-BLINK-LEFT   any case, with separators
    eyeBlink_L, eyeBlink.L, eyeBlink_R, eyeBlink_Left   side suffixes
    Face.eyeBlinkLeft, blendShape1.eyeBlinkLeft, Head|eyeBlinkLeft, ARKit:eyeBlinkLeft,
    arkit_eyeBlinkLeft        prefixes (a path before ``.``/``:``/``|``/``/``, or a word before ``_``)

Typical use on the Blender side::

    mapping, unmatched = match_names([kb.name for kb in key_blocks])
    pairs, skipped = apply_mapping(result_names, mapping)   # write pairs, report skipped
"""

from __future__ import annotations

import re

ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)
assert len(ARKIT_NAMES) == 52 and len(set(ARKIT_NAMES)) == 52

# "jawLeft"/"mouthLeft" are a movement *towards* a side, not one side of a pair:
# they mirror to each other like the others, which is what mirror() needs.
_KEY = {re.sub(r"[^a-z0-9]", "", n.lower()): n for n in ARKIT_NAMES}
# Longest first, so a prefixed "fooMouthSmileLeft" never matches a shorter name that is its tail.
_KEYS_BY_LENGTH = sorted(_KEY, key=len, reverse=True)

_SIDE_SUFFIX = re.compile(r"(?<=[A-Za-z0-9])[._\- ]?(?P<side>L|R|Left|Right|left|right|LEFT|RIGHT)$")
_SIDE_SUFFIX_SHORT = re.compile(r"(?<=[A-Za-z0-9])[._\- ](?P<side>l|r)$")
_PATH_PREFIX = re.compile(r"^.*[.:|/]")


def _key(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


def _with_side_word(name: str) -> str:
    """``eyeBlink_L`` / ``eyeBlink.L`` / ``eyeBlink_left`` -> ``eyeBlinkLeft`` (other names unchanged)."""
    m = _SIDE_SUFFIX.search(name) or _SIDE_SUFFIX_SHORT.search(name)
    if not m:
        return name
    side = "Left" if m.group("side")[0] in "Ll" else "Right"
    return name[:m.start()] + side


def arkit_name(name: str) -> str | None:
    """The ARKit name an avatar's shape-key ``name`` stands for, or None.

    Exact (case- and separator-insensitive) matches first, then the name with a
    path prefix removed (``Face.eyeBlinkLeft``), then a word prefix
    (``arkit_eyeBlinkLeft``, ``blendShape1eyeBlinkLeft``): the longest ARKit name
    the normalized name ends with.
    """
    if not isinstance(name, str) or not name.strip():
        return None
    s = _with_side_word(name.strip())
    k = _key(s)
    if k in _KEY:
        return _KEY[k]
    tail = _PATH_PREFIX.sub("", s)
    k2 = _key(_with_side_word(tail))
    if k2 in _KEY:
        return _KEY[k2]
    for cand in (k2, k):
        for ak in _KEYS_BY_LENGTH:
            # a real prefix only: something must stand before the ARKit name
            if len(cand) > len(ak) and cand.endswith(ak):
                return _KEY[ak]
    return None


def match_names(avatar_names) -> tuple[dict[str, str], list[str]]:
    """Map an avatar's shape-key names onto ARKit names.

    Returns ``(mapping, unmatched)``: ``mapping`` is ``{arkit_name: avatar_name}``
    (in ARKit order); ``unmatched`` lists the avatar names (in their order) that
    stand for no ARKit name, or for one another name already took (an exact
    spelling beats a prefixed or suffixed one; otherwise the first one wins).
    Blender's "Basis" key is ignored (neither mapped nor unmatched).
    """
    names = [str(n) for n in avatar_names]
    found: dict[str, list[str]] = {}
    unmatched: list[str] = []
    for n in names:
        if n.strip().lower() == "basis":
            continue
        a = arkit_name(n)
        if a is None:
            unmatched.append(n)
        else:
            found.setdefault(a, []).append(n)
    mapping: dict[str, str] = {}
    for a in ARKIT_NAMES:
        if a not in found:
            continue
        cands = found[a]
        exact = [c for c in cands if c == a]
        best = exact[0] if exact else cands[0]
        mapping[a] = best
        unmatched.extend(c for c in cands if c != best)
    order = {n: i for i, n in enumerate(names)}
    unmatched.sort(key=lambda n: order.get(n, len(order)))
    return mapping, unmatched


def apply_mapping(arkit_names, mapping: dict[str, str]) -> tuple[list[tuple[str, str]], list[str]]:
    """Which result columns an avatar can take.

    ``arkit_names``: the names of a result's weight columns; ``mapping``: from
    :func:`match_names`. Returns ``(pairs, skipped)``: ``pairs`` = ``[(arkit_name,
    avatar_name)]`` for the columns the avatar has, ``skipped`` = the ARKit names
    it lacks (to report in the panel; their weights are not applied).
    """
    pairs, skipped = [], []
    for a in arkit_names:
        if a in mapping:
            pairs.append((a, mapping[a]))
        else:
            skipped.append(a)
    return pairs, skipped


def mirror(name: str) -> str:
    """The ARKit name of the other side (``eyeBlinkLeft`` <-> ``eyeBlinkRight``); unpaired names map to themselves."""
    if name.endswith("Left"):
        other = name[:-4] + "Right"
    elif name.endswith("Right"):
        other = name[:-5] + "Left"
    else:
        return name
    return other if other in ARKIT_NAMES else name


def symmetric_pairs(names) -> list[tuple[str, str]]:
    """``(left, right)`` ARKit name pairs both present in ``names`` (ARKit order)."""
    present = set(names)
    return [(a, mirror(a)) for a in ARKIT_NAMES
            if a.endswith("Left") and a in present and mirror(a) in present and mirror(a) != a]


def region(name: str) -> str:
    """Face region of an ARKit name: "eye", "jaw", "mouth", "brow", "cheek", "nose" or "tongue"."""
    for r in ("eye", "jaw", "mouth", "brow", "cheek", "nose", "tongue"):
        if name.startswith(r):
            return r
    return "other"
