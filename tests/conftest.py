"""Shared test settings: a private model cache, so the tiny test model is pre-trained once per
session (env subprocesses inherit the variable) and no user cache is touched."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HFFM_CACHE_DIR", tempfile.mkdtemp(prefix="hffm-test-cache-"))
