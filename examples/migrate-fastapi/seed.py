"""Makes the data of a FastAPI app before its move to Latch, the way such apps store it.

``python3 seed.py sqlite APP.sqlite DATA.json`` writes the app's own SQLite file: a
fastapi-users ``user`` table (CHAR(36) UUID ids; bcrypt hashes from ``bcrypt``, argon2id hashes
with pwdlib's parameters from ``argon2-cffi``), ``items`` owned by users, ``organizations`` with
owner/admin/member/viewer ``organization_members``, agent ``api_keys`` (SHA-256 hex and a
prefix) and monitored ``sites`` (a UUID and a plain API token).

``python3 seed.py jsonl DIR APP.sqlite DATA.json`` writes what ``mongoexport`` gives for a
fastapi-users-beanie app (``DIR/User.jsonl``, ObjectId ids, canonical Extended JSON) and the
app's items, owned by those ObjectIds, in APP.sqlite.

DATA.json gets the rows with the plain passwords, keys and tokens, for whoever signs in with them.
"""

import hashlib
import json
import os
import secrets
import sqlite3
import sys
import uuid
from typing import Any, Dict, List

import bcrypt
from argon2 import PasswordHasher

# pwdlib's Argon2Hasher defaults (fastapi-users ≥ 13): $argon2id$v=19$m=65536,t=3,p=4$…
ARGON2 = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4)


def bcrypt_hash(password: str, prefix: bytes = b"2b") -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10, prefix=prefix)).decode()


def new_key() -> Dict[str, str]:
    # The agent key scheme of the seeds: a visible prefix, a random body, SHA-256 hex stored.
    key = "sk_live_" + secrets.token_urlsafe(24)
    return {"key": key, "key_prefix": key[:12], "key_hash": hashlib.sha256(key.encode()).hexdigest()}


def users() -> List[Dict[str, Any]]:
    rows = [
        {"name": "alice", "email": "alice@example.test", "password": "alice's old passphrase", "hash": "bcrypt", "is_superuser": False},
        {"name": "bob", "email": "bob@example.test", "password": "bob's old passphrase", "hash": "argon2", "is_superuser": False},
        {"name": "root", "email": "root@example.test", "password": "the master password", "hash": "bcrypt-2a", "is_superuser": True},
        {"name": "dave", "email": "dave@example.test", "password": "dave left long ago", "hash": "bcrypt", "is_superuser": False, "is_active": False},
        # A hash no one can verify (an old scheme): imported without a password, reported.
        {"name": "erin", "email": "erin@example.test", "password": None, "hash": "unusable", "is_superuser": False},
    ]
    for row in rows:
        row["id"] = str(uuid.uuid4())
        row.setdefault("is_active", True)
        row["is_verified"] = True
        if row["hash"] == "bcrypt":
            row["hashed_password"] = bcrypt_hash(row["password"])
        elif row["hash"] == "bcrypt-2a":
            row["hashed_password"] = bcrypt_hash(row["password"], b"2a")
        elif row["hash"] == "argon2":
            row["hashed_password"] = ARGON2.hash(row["password"])
        else:
            row["hashed_password"] = "md5$" + hashlib.md5(b"forgotten").hexdigest()
    return rows


SCHEMA = """
CREATE TABLE user (
  id CHAR(36) NOT NULL PRIMARY KEY,
  email VARCHAR(320) NOT NULL UNIQUE,
  hashed_password VARCHAR(1024) NOT NULL,
  is_active BOOLEAN NOT NULL,
  is_superuser BOOLEAN NOT NULL,
  is_verified BOOLEAN NOT NULL
);
CREATE TABLE items (id INTEGER PRIMARY KEY, owner_id CHAR(36) NOT NULL, title TEXT NOT NULL);
CREATE TABLE organizations (id CHAR(36) NOT NULL PRIMARY KEY, name TEXT NOT NULL, slug TEXT NOT NULL UNIQUE);
CREATE TABLE organization_members (user_id CHAR(36) NOT NULL, organization_id CHAR(36) NOT NULL, role TEXT NOT NULL, PRIMARY KEY (user_id, organization_id));
CREATE TABLE api_keys (id CHAR(36) NOT NULL PRIMARY KEY, user_id CHAR(36) NOT NULL, name TEXT NOT NULL, key_prefix TEXT NOT NULL, key_hash TEXT NOT NULL);
CREATE TABLE sites (uuid CHAR(36) NOT NULL PRIMARY KEY, name TEXT NOT NULL, organization_id CHAR(36) NOT NULL, api_token TEXT NOT NULL);
"""


def items_for(people: Dict[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [
        {"owner_id": people["alice"]["id"], "title": "alice's notebook"},
        {"owner_id": people["alice"]["id"], "title": "alice's lamp"},
        {"owner_id": people["bob"]["id"], "title": "bob's bicycle"},
        {"owner_id": people["root"]["id"], "title": "root's keys"},
    ]


def write_items(db: sqlite3.Connection, items: List[Dict[str, Any]]) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, owner_id CHAR(36) NOT NULL, title TEXT NOT NULL)")
    db.executemany("INSERT INTO items (owner_id, title) VALUES (?, ?)", [(i["owner_id"], i["title"]) for i in items])


def sqlite_app(path: str) -> Dict[str, Any]:
    rows = users()
    # Two accounts whose emails differ only in case: a conflict the import reports, not a merge.
    for email in ("Mallory@example.test", "mallory@example.test"):
        rows.append({"name": email, "email": email, "password": None, "hash": "bcrypt", "id": str(uuid.uuid4()), "is_active": True, "is_superuser": False, "is_verified": False, "hashed_password": bcrypt_hash("mallory")})
    people = {r["name"]: r for r in rows}
    acme = {"id": str(uuid.uuid4()), "name": "Acme", "slug": "acme"}
    memberships = [
        {"user_id": people["alice"]["id"], "organization_id": acme["id"], "role": "owner"},
        {"user_id": people["bob"]["id"], "organization_id": acme["id"], "role": "viewer"},
    ]
    keys = [
        {"id": str(uuid.uuid4()), "user_id": people["alice"]["id"], "name": "alice's agent", **new_key()},
        # Not a SHA-256 hex digest: refused and reported, the other keys imported.
        {"id": str(uuid.uuid4()), "user_id": people["bob"]["id"], "name": "bob's broken key", "key": None, "key_prefix": "sk_live_xxxx", "key_hash": "not-a-sha256"},
    ]
    sites = [{"uuid": str(uuid.uuid4()), "name": "www.acme.test", "organization_id": acme["id"], "api_token": "sk_site_" + secrets.token_urlsafe(24)}]
    items = items_for(people)
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    db.executemany("INSERT INTO user VALUES (?, ?, ?, ?, ?, ?)", [(r["id"], r["email"], r["hashed_password"], r["is_active"], r["is_superuser"], r["is_verified"]) for r in rows])
    write_items(db, items)
    db.execute("INSERT INTO organizations VALUES (?, ?, ?)", (acme["id"], acme["name"], acme["slug"]))
    db.executemany("INSERT INTO organization_members VALUES (?, ?, ?)", [(m["user_id"], m["organization_id"], m["role"]) for m in memberships])
    db.executemany("INSERT INTO api_keys VALUES (?, ?, ?, ?, ?)", [(k["id"], k["user_id"], k["name"], k["key_prefix"], k["key_hash"]) for k in keys])
    db.executemany("INSERT INTO sites VALUES (?, ?, ?, ?)", [(s["uuid"], s["name"], s["organization_id"], s["api_token"]) for s in sites])
    db.commit()
    db.close()
    return {"users": rows, "items": items, "organizations": [acme], "memberships": memberships, "api_keys": keys, "sites": sites}


def object_id() -> str:
    return secrets.token_hex(12)


def jsonl_app(directory: str, path: str) -> Dict[str, Any]:
    rows = users()
    for row in rows:
        row["id"] = object_id()
    people = {r["name"]: r for r in rows}
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "User.jsonl"), "w", encoding="utf-8") as f:
        for r in rows:
            doc = {
                "_id": {"$oid": r["id"]},
                "email": r["email"],
                "hashed_password": r["hashed_password"],
                "is_active": r["is_active"],
                "is_superuser": r["is_superuser"],
                "is_verified": r["is_verified"],
                "display_name": r["name"].capitalize(),
                "created_at": {"$date": {"$numberLong": "1700000000000"}},
            }
            f.write(json.dumps(doc) + "\n")
    items = items_for(people)
    db = sqlite3.connect(path)
    write_items(db, items)
    db.commit()
    db.close()
    return {"users": rows, "items": items}


def main(argv: List[str]) -> None:
    if len(argv) == 3 and argv[0] == "sqlite":
        data = sqlite_app(argv[1])
        out = argv[2]
    elif len(argv) == 4 and argv[0] == "jsonl":
        data = jsonl_app(argv[1], argv[2])
        out = argv[3]
    else:
        sys.exit("usage: seed.py sqlite APP.sqlite DATA.json | seed.py jsonl DIR APP.sqlite DATA.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)


if __name__ == "__main__":
    main(sys.argv[1:])
