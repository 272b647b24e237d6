"""`rig image`: build, list and show the guest images rig boots kernels on."""

from __future__ import annotations

import argparse
import json

from rig import image
from rig.errors import UserError

NAME = "image"
HELP = "build, list and show guest images (Debian with IGT, sshd and rig's init; cached)"
ORDER = 20
EXAMPLES = [
    "rig image build",
    "rig image build images/default.toml --rebuild",
    "rig image list",
    "rig image show default",
    "rig image show default --json",
    "rig image prune",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = sub.add_parser("build", help="build a recipe's image (a cache hit if already built)")
    build.add_argument("recipe", nargs="?", default="default",
                       help="recipe name in images/ or path of a .toml file (default: %(default)s)")
    build.add_argument("--rebuild", action="store_true", help="build again even if cached")
    build.add_argument("--quiet", action="store_true", help="no progress lines")
    sub.add_parser("list", help="list the images in rig's cache")
    sub.add_parser("prune", help="delete cached images no recipe builds any more")
    show = sub.add_parser("show", help="print an image's manifest: package versions (IGT's), size, recipe hash")
    show.add_argument("recipe", nargs="?", default="default", help="recipe name, .toml path or recipe hash")
    show.add_argument("--json", action="store_true", help="the whole manifest as JSON")
    show.add_argument("--packages", action="store_true", help="list every package with its version")


def _mib(size: object) -> str:
    return f"{int(str(size)) / (1 << 20):.0f} MiB"


def run(args: argparse.Namespace) -> int:
    if args.action == "build":
        cached = image.find_image(args.recipe) if not args.rebuild else None
        built = image.ensure_image(args.recipe, progress=not args.quiet, rebuild=args.rebuild)
        manifest = built.read_manifest()
        state = "cache hit" if cached is not None else "built"
        print(f"image   {manifest['recipe']} {built.recipe_hash} ({state})")
        print(f"IGT     {manifest['igt_version']}")
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
            print(f"{manifest['recipe']:<12} {item.recipe_hash} {state} IGT {manifest['igt_version']:<8} "
                  f"{_mib(manifest['disk_bytes']):>9}  built {manifest['built_at']}  {item.root}")
        if stale:
            print(f"{len(stale)} stale image(s); delete them with: rig image prune")
        return 0
    found = image.find_image(args.recipe)
    if found is None:
        raise UserError(f"guest image '{args.recipe}' is not built", hint=f"run: rig image build {args.recipe}")
    manifest = found.read_manifest()
    if args.json:
        print(json.dumps(manifest, indent=2, sort_keys=True))
        return 0
    packages = manifest["packages"]
    assert isinstance(packages, dict)
    recipe = manifest["recipe_content"]
    assert isinstance(recipe, dict)
    print(f"recipe       {manifest['recipe']} (hash {manifest['recipe_hash']})")
    print(f"suite        {recipe['suite']} {recipe['variant']} from {manifest['mirror']}")
    print(f"built        {manifest['built_at']}")
    print(f"IGT          {manifest['igt_version']}")
    for name in recipe["packages"]:
        print(f"  {name:<22} {packages.get(name, '(not installed)')}")
    print(f"packages     {len(packages)} installed")
    print(f"size         {_mib(manifest['content_bytes'])} of files, {_mib(manifest['disk_bytes'])} disk image")
    print(f"disk         {found.disk}")
    print(f"ssh key      {found.ssh_key}")
    print(f"known_hosts  {found.known_hosts}")
    if args.packages:
        for name, version in packages.items():
            print(f"  {name:<40} {version}")
    return 0
