"""Image folders -> the image files of each domain, or the pairs of paired data.

Layouts: DATA/<domain>/** (any number of domains), DATA/train/<domain>/** with DATA/test/<domain>,
and the CycleGAN layout DATA/trainA, trainB, testA, testB. Paired data (pix2pix): two such domain
folders whose files match by name, or the reference pix2pix's side-by-side A|B images in
DATA/train/ (or DATA/ itself). Folder names become domain names, so they are checked here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gantrans.config import DataConfig
from gantrans.errors import DataError
from gantrans.images import IMAGE_EXTENSIONS, find_images, is_image_path, no_images_message
from gantrans.names import domain_name_problem


def discover_domains(root: Path | str, domains: Sequence[str] = (), split: str = "train") -> dict[str, list[Path]]:
    """Map each domain name to its image files for `split` ("train" or "test")."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist" if not root.exists() else f"{root} is not a folder")
    if (root / f"{split}A").is_dir() or (root / f"{split}B").is_dir():  # CycleGAN layout
        names = tuple(domains) or ("A", "B")
        if len(names) != 2:
            raise DataError(f"{root} has the {split}A/{split}B layout: --domains needs exactly 2 names, got {','.join(names)}")
        return {name: _domain_images(root / f"{split}{letter}", name) for name, letter in zip(names, "AB")}
    if (root / split).is_dir() and _subfolders(root / split):
        root = root / split
    present = _subfolders(root)
    names = tuple(domains) or tuple(present)
    if not names:
        loose = len([path for path in root.iterdir() if path.suffix.lower() in IMAGE_EXTENSIONS])
        found = f" (it holds {loose} images directly)" if loose else ""
        raise DataError(f"{root} has no domain folders{found}: expected {root}/<domain>/ for each domain, or trainA/trainB")
    missing = [name for name in names if name not in present]
    if missing:
        raise DataError(f"domain folder {root / missing[0]} not found; {root} has: {', '.join(present) or 'no sub-folders'}")
    for name in names:  # folder names become domain names, and those become parts of file names
        if problem := domain_name_problem(name):
            raise DataError(f"domain folder {root / name}: {problem}; rename the folder, or pick others with --domains")
    return {name: _domain_images(root / name, name) for name in names}


def held_out_files(root: Path | str, domains: Sequence[str] = ()) -> dict[str, list[Path]]:
    """Each domain's images of the test split when the data has one (test/, testA, testB), else
    the training images: what evaluations and sample grids show."""
    has_test = any((Path(root) / name).is_dir() for name in ("test", "testA", "testB"))
    return discover_domains(root, domains, "test" if has_test else "train")


def _subfolders(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.is_dir() and not path.name.startswith("."))


def _domain_images(folder: Path, name: str) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"domain {name!r}: folder {folder} not found")
    images = find_images(folder)
    if not images:
        raise DataError(f"domain {name!r}: {no_images_message(folder)}")
    return images


def training_files(config: DataConfig) -> dict[str, list[Path]]:
    """The training images of each domain: `discover_domains`'s, or for a paired layout the pairs of
    `discover_pairs` (pair i is file i of both domains)."""
    if config.paired == "none":
        return discover_domains(config.root, config.domains)
    return discover_pairs(config.root, config.paired, config.domains)


def discover_pairs(root: Path | str, layout: str, domains: Sequence[str] = (), split: str = "train") -> dict[str, list[Path]]:
    """{input domain: files, target domain: files} of `split`, pair i being file i of both.

    folders: two domain folders as `discover_domains` finds them, matched by file name; a file
    without a partner is an error. aligned, aligned-btoa: the reference's A|B images, each file
    standing for both of its halves; domains named A, B (B, A for aligned-btoa: input first).
    """
    if layout == "folders":
        return match_pairs(discover_domains(root, domains, split))
    names = tuple(domains) or (("B", "A") if layout == "aligned-btoa" else ("A", "B"))
    if len(names) != 2:
        raise DataError(f"--paired {layout}: --domains names the input and the target half, 2 names, got {','.join(names)}")
    paths = _aligned_images(Path(root), split)
    return {names[0]: paths, names[1]: paths}


def held_out_pairs(root: Path | str, layout: str, domains: Sequence[str] = ()) -> dict[str, list[Path]]:
    """The pairs of the test split (aligned: test/, else val/), else the training pairs; files of an
    incomplete test split without a partner are left out (they only make sample grids)."""
    try:
        if layout == "folders":
            return match_pairs(held_out_files(root, domains), strict=False)
        split = next((name for name in ("test", "val") if (Path(root) / name).is_dir()), "train")
        return discover_pairs(root, layout, domains, split)
    except DataError:  # an empty or unmatched test split: the training pairs still make a preview
        return discover_pairs(root, layout, domains)


def match_pairs(files: dict[str, list[Path]], strict: bool = True) -> dict[str, list[Path]]:
    """Two domains' files paired by file name without extension (DATA/A/x.png <-> DATA/B/x.jpg),
    sorted by it. `strict`: a file without a partner is an error naming it."""
    if len(files) != 2:
        raise DataError(
            f"paired data has 2 domains, an input and a target; found {len(files)} ({', '.join(files)}): pick them with --domains"
        )
    (source, source_files), (target, target_files) = files.items()
    source_names, target_names = _by_name(source, source_files), _by_name(target, target_files)
    unpaired = [(path, target) for name, path in source_names.items() if name not in target_names]
    unpaired += [(path, source) for name, path in target_names.items() if name not in source_names]
    if unpaired and strict:
        path, other = unpaired[0]
        total = len(source_files) + len(target_files)
        raise DataError(
            f"{path} has no partner in domain {other!r} (no file named {path.stem}.* there; pairs are matched by file name): "
            f"{len(unpaired)} of the {total} files have none"
        )
    names = sorted(set(source_names) & set(target_names))
    if not names:
        raise DataError(f"no file of domain {source!r} has a partner of the same name in domain {target!r}")
    return {source: [source_names[name] for name in names], target: [target_names[name] for name in names]}


def _by_name(domain: str, paths: Sequence[Path]) -> dict[str, Path]:
    """File name without extension -> path; two files of one name would make pairs ambiguous."""
    named: dict[str, Path] = {}
    for path in paths:
        if path.stem in named:
            raise DataError(f"domain {domain!r} has two files named {path.stem}: {named[path.stem]} and {path}; pairs are matched by name")
        named[path.stem] = path
    return named


def _aligned_images(root: Path, split: str) -> list[Path]:
    """The A|B images of `split`: DATA/<split>/**, or (for training) the images directly in DATA."""
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist" if not root.exists() else f"{root} is not a folder")
    folder = root / split
    if folder.is_dir():
        images = find_images(folder)
    elif split == "train":
        folder, images = root, sorted(path for path in root.iterdir() if path.is_file() and is_image_path(path))
    else:
        raise DataError(f"{root} has no {split}/ folder of A|B images")
    if not images:
        raise DataError(f"paired A|B images: {no_images_message(folder)}")
    return images
