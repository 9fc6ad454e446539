"""The app's user dependencies, now answered by Latch (this module replaces the app's
fastapi-users ``users.py``: routes import the same names from here).

Environment: LATCH_ISSUER, LATCH_AUDIENCE (this API's resource identifier at Latch), and
LATCH_INTROSPECTION_CLIENT_ID / LATCH_INTROSPECTION_CLIENT_SECRET so the agents' old API keys,
imported as personal access tokens, are accepted through introspection.
"""

import os
import sys
from pathlib import Path

# Run from a checkout: the latch_auth next door, without installing it.
_PACKAGE_DIR = Path(__file__).resolve().parents[2] / "packages" / "python"
if (_PACKAGE_DIR / "latch_auth").is_dir():
    sys.path.insert(0, str(_PACKAGE_DIR))

from latch_auth import LatchAuth, LatchUser  # noqa: E402

_introspection = (os.environ.get("LATCH_INTROSPECTION_CLIENT_ID"), os.environ.get("LATCH_INTROSPECTION_CLIENT_SECRET"))

auth = LatchAuth(
    os.environ["LATCH_ISSUER"],
    os.environ["LATCH_AUDIENCE"],
    introspection_client=(_introspection[0], _introspection[1]) if _introspection[0] and _introspection[1] else None,
)

User = LatchUser
current_active_user = auth.current_active_user
current_superuser = auth.current_superuser
get_current_user = auth.get_current_user
#: An organization token for the path's ``org_id`` (any role).
current_org_member = auth.require_org_role(org_param="org_id")
#: Monitored sites keep sending ``X-Site-UUID`` and ``X-API-Token``.
current_site = auth.legacy_client("X-Site-UUID", "X-API-Token")
