"""`rig image`: build, list and show the guest images rig boots kernels on."""

from __future__ import annotations

import argparse
import json

from rig import image
from rig.errors import UserError
from rig.target import DEFAULT_TARGET

NAME = "image"
HELP = "build, list and show guest images (Debian with sshd, rig's init and, on x86_64, IGT; cached)"
ORDER = 20
EXAMPLES = [
    "rig image build",
    "rig image build images/default.toml --rebuild",
    "rig image build --arch arm64",
    "rig image list",
    "rig image show default",
    "rig image show default --json",
    "rig image prune",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = sub.add_parser("build", help="build a recipe's image (a cache hit if already built)")
    build.add_argument("recipe", nargs="?", default=None,
                       help="recipe name in images/ or path of a .toml file "
                            "(default: the --arch's recipe, 'default' for x86_64)")
    build.add_argument("--arch", choices=sorted(image.DEFAULT_RECIPES), default=None,
                       help="guest architecture: builds its recipe (arm64: images/arm64.toml); "
                            "with a recipe, checks the recipe is for it")
    build.add_argument("--rebuild", action="store_true", help="build again even if cached")
    build.add_argument("--quiet", action="store_true", help="no progress lines")
    sub.add_parser("list", help="list the images in rig's cache")
    sub.add_parser("prune", help="delete cached images no recipe builds any more")
    show = sub.add_parser("show", help="print an image's manifest: package versions (IGT's), size, recipe hash")
    show.add_argument("recipe", nargs="?", default=None,
                      help="recipe name, .toml path or recipe hash (default: the --arch's recipe)")
    show.add_argument("--arch", choices=sorted(image.DEFAULT_RECIPES), default=None,
                      help="show this architecture's recipe (default: x86_64)")
    show.add_argument("--json", action="store_true", help="the whole manifest as JSON")
    show.add_argument("--packages", action="store_true", help="list every package with its version")


def _mib(size: object) -> str:
    return f"{int(str(size)) / (1 << 20):.0f} MiB"


def _igt(manifest: dict[str, object]) -> str:
    # The arm64 image has none: Debian builds igt-gpu-tools for amd64 and i386 only.
    return str(manifest.get("igt_version") or "none")


def _arch(manifest: dict[str, object]) -> str:
    # Manifests written before recipes had an arch are all x86_64.
    return str(manifest.get("arch") or DEFAULT_TARGET.name)


def _recipe(args: argparse.Namespace) -> str:
    """The recipe the command line names: given, or the --arch's (x86_64's by default)."""
    if args.recipe is not None:
        return str(args.recipe)
    return image.default_recipe(args.arch or DEFAULT_TARGET.name)


def run(args: argparse.Namespace) -> int:
    if args.action == "build":
        recipe = _recipe(args)
        if args.arch is not None:
            image.check_arch(image.load_recipe(recipe), args.arch)
        cached = image.find_image(recipe) if not args.rebuild else None
        built = image.ensure_image(recipe, progress=not args.quiet, rebuild=args.rebuild)
        manifest = built.read_manifest()
        state = "cache hit" if cached is not None else "built"
        print(f"image   {manifest['recipe']} {built.recipe_hash} ({state})")
        print(f"arch    {_arch(manifest)}")
        print(f"IGT     {_igt(manifest)}")
        print(f"disk    {built.disk} ({_mib(manifest['disk_bytes'])})")
        return 0
    if args.action == "prune":
        stale = image.stale_images()
        for item in stale:
            image.remove_image(item)
            print(f"removed {item.root}")
        if not stale:
            print("nothing to remove: every cached image is current")
        return 0
    if args.action == "list":
        images = image.list_images()
        if not images:
            print("no guest images yet; build one with: rig image build")
        stale = {item.recipe_hash for item in image.stale_images()}
        for item in images:
            manifest = item.read_manifest()
            state = "stale  " if item.recipe_hash in stale else "current"
            print(f"{manifest['recipe']:<12} {item.recipe_hash} {state} {_arch(manifest):<7} IGT {_igt(manifest):<8} "
                  f"{_mib(manifest['disk_bytes']):>9}  built {manifest['built_at']}  {item.root}")
        if stale:
            print(f"{len(stale)} stale image(s); delete them with: rig image prune")
        return 0
    recipe = _recipe(args)
    found = image.find_image(recipe)
    if found is None:
        raise UserError(f"guest image '{recipe}' is not built", hint=f"run: rig image build {recipe}")
    manifest = found.read_manifest()
    if args.json:
        print(json.dumps(manifest, indent=2, sort_keys=True))
        return 0
    packages = manifest["packages"]
    assert isinstance(packages, dict)
    content = manifest["recipe_content"]
    assert isinstance(content, dict)
    print(f"recipe       {manifest['recipe']} (hash {manifest['recipe_hash']})")
    print(f"arch         {_arch(manifest)}")
    print(f"suite        {content['suite']} {content['variant']} from {manifest['mirror']}")
    print(f"built        {manifest['built_at']}")
    print(f"IGT          {_igt(manifest)}")
    for name in content["packages"]:
        print(f"  {name:<22} {packages.get(name, '(not installed)')}")
    print(f"packages     {len(packages)} installed")
    # rig's own guest programs (images/programs/), where the recipe names some
    for path, digest in dict(manifest.get("programs") or {}).items():
        print(f"program      {path} (sha256 {str(digest)[:16]})")
    print(f"size         {_mib(manifest['content_bytes'])} of files, {_mib(manifest['disk_bytes'])} disk image")
    print(f"disk         {found.disk}")
    print(f"ssh key      {found.ssh_key}")
    print(f"known_hosts  {found.known_hosts}")
    if args.packages:
        for name, version in packages.items():
            print(f"  {name:<40} {version}")
    return 0
