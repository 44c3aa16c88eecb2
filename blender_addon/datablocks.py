"""All or nothing: track the datablocks (and files) an apply creates, and remove
them all again when any step fails, so a failed apply leaves nothing behind.

    with Created() as made:
        im = made.add(bpy.data.images, bpy.data.images.new(...))
        ...
    # an exception inside the block removed every datablock added, in reverse order
"""

from __future__ import annotations

import os
import shutil


class Created:
    def __init__(self):
        self.items: list = []   # (bpy.data collection, datablock)
        self.paths: list[str] = []  # files/folders to delete on failure

    def add(self, collection, datablock):
        self.items.append((collection, datablock))
        return datablock

    def add_path(self, path: str) -> str:
        self.paths.append(path)
        return path

    def rollback(self) -> None:
        for coll, db in reversed(self.items):
            try:
                coll.remove(db)
            except (ReferenceError, RuntimeError, KeyError):
                pass  # already gone (a removed object takes nothing else with it)
        self.items.clear()
        for p in reversed(self.paths):
            if os.path.isdir(p):
                shutil.rmtree(p, ignore_errors=True)
            elif os.path.exists(p):
                try:
                    os.remove(p)
                except OSError:
                    pass
        self.paths.clear()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.rollback()
        return False
