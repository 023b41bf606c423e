"""The JSON the Lua scripts take on the hot path (rows, journey steps, their configs).

Compact, and without the check for circular references (script arguments are plain
lists, dicts, strings and numbers): a third less of the time ``json.dumps`` takes with
its defaults, measured on a batch's rows.
"""

from __future__ import annotations

import json

dumps = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
