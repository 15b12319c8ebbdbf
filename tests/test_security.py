"""Security: JWT attacks, API keys, audit-log tampering and scrubbing, AES-GCM encryption with rotation."""
import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from typer.testing import CliRunner

from llm_platform.cli.safety import audit_app, keys_app
from llm_platform.security.audit import AuditLog, scrub_text, verify_log
from llm_platform.security.auth import APIKeyStore, AuthError, JWTConfig, JWTKey, JWTKeySet, jwt_key_from_pem
from llm_platform.security.crypto import (
    CryptoConfig,
    DecryptError,
    KeyRing,
    generate_key,
    read_encrypted,
    write_encrypted,
)

CFG = JWTConfig(issuer="https://auth.example", audience="gateway", leeway_s=0, max_ttl_s=3600)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def forge(header: dict, payload: dict, sign=lambda msg: b"") -> str:
    msg = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    return f"{msg}.{b64url(sign(msg.encode()))}"


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def keyset(rsa_key):
    pem = rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return JWTKeySet([jwt_key_from_pem("rs1", pem)])


def claims(**over):
    now = int(time.time())
    return {"iss": CFG.issuer, "aud": CFG.audience, "sub": "alice", "iat": now, "nbf": now, "exp": now + 600,
            "scope": "chat"} | over


# ---------------------------------------------------------------- JWT
def test_valid_token_verifies(keyset):
    tok = keyset.issue(CFG, "alice", ["chat"])
    c = keyset.verify(tok, CFG, scope="chat")
    assert c["sub"] == "alice" and jwt.get_unverified_header(tok) == {"alg": "RS256", "kid": "rs1", "typ": "JWT"}


def test_alg_none_rejected(keyset):
    for header in [{"alg": "none", "kid": "rs1"}, {"alg": "None", "kid": "rs1"}, {"alg": "none"}]:
        with pytest.raises(AuthError):
            keyset.verify(forge(header, claims()), CFG)


def test_hs_rs_confusion_rejected(keyset, rsa_key):
    "HS256 signed with the RSA public key as the HMAC secret (the classic algorithm-confusion attack)."
    pub_pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    mac = lambda msg: hmac.new(pub_pem, msg, hashlib.sha256).digest()
    with pytest.raises(AuthError, match="not 'RS256'"):
        keyset.verify(forge({"alg": "HS256", "typ": "JWT", "kid": "rs1"}, claims(), mac), CFG)
    with pytest.raises(AuthError, match="rejected"):      # header claims RS256, signature is the HMAC
        keyset.verify(forge({"alg": "RS256", "typ": "JWT", "kid": "rs1"}, claims(), mac), CFG)


@pytest.mark.parametrize("over,match", [      # times relative to when the test runs, not to collection
    (lambda now: {"exp": now - 10}, "expired"),
    (lambda now: {"aud": "someone-else"}, "(?i)audience"),
    (lambda now: {"iss": "https://evil.example"}, "issuer"),
    (lambda now: {"nbf": now + 600, "exp": now + 900}, "not yet valid"),
    (lambda now: {"exp": now + 86400}, "lifetime"),
], ids=["expired", "audience", "issuer", "not-yet-valid", "lifetime"])
def test_bad_claims_rejected(keyset, rsa_key, over, match):
    tok = jwt.encode(claims(**over(int(time.time()))), rsa_key, algorithm="RS256", headers={"kid": "rs1"})
    with pytest.raises(AuthError, match=match):
        keyset.verify(tok, CFG)


def test_missing_required_claim_rejected(keyset, rsa_key):
    c = claims(); del c["exp"]
    with pytest.raises(AuthError, match="exp"):
        keyset.verify(jwt.encode(c, rsa_key, algorithm="RS256", headers={"kid": "rs1"}), CFG)


def test_tampered_token_rejected(keyset):
    tok = keyset.issue(CFG, "alice", ["chat"])
    h, p, s = tok.split(".")
    flipped_sig = s[:10] + ("A" if s[10] != "A" else "B") + s[11:]
    evil_payload = b64url(json.dumps(claims(sub="admin")).encode())
    for bad in [f"{h}.{p}.{flipped_sig}", f"{h}.{evil_payload}.{s}", f"{h}.{p}.", "not.a.jwt", "garbage"]:
        with pytest.raises(AuthError):
            keyset.verify(bad, CFG)


def test_unknown_kid_and_missing_scope_rejected(keyset, rsa_key):
    with pytest.raises(AuthError, match="unknown key id"):
        keyset.verify(jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "rs9"}), CFG)
    with pytest.raises(AuthError, match="unknown key id"):
        keyset.verify(jwt.encode(claims(), rsa_key, algorithm="RS256"), CFG)          # no kid at all
    with pytest.raises(AuthError, match="scope"):
        keyset.verify(keyset.issue(CFG, "alice", ["chat"]), CFG, scope="admin")


def test_key_rotation_by_kid():
    k1, k2 = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    pem = lambda k: k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    old = JWTKeySet([jwt_key_from_pem("2026-10", pem(k1))])
    tok_old = old.issue(CFG, "alice")
    both = JWTKeySet([jwt_key_from_pem("2026-10", pem(k1)), jwt_key_from_pem("2026-11", pem(k2))])
    tok_new = both.issue(CFG, "bob")
    assert jwt.get_unverified_header(tok_new)["kid"] == "2026-11"                 # the newest key signs
    assert both.verify(tok_old, CFG)["sub"] == "alice" and both.verify(tok_new, CFG)["sub"] == "bob"
    verify_only = JWTKeySet([JWTKey("2026-11", "ES256", None, k2.public_key())])  # old key retired
    assert verify_only.verify(tok_new, CFG)["sub"] == "bob"
    with pytest.raises(AuthError, match="unknown key id"):
        verify_only.verify(tok_old, CFG)
    # a token signed by the retired key but relabelled with the new kid fails the signature check
    h, p, s = tok_old.split(".")
    relabelled = b64url(json.dumps({"alg": "ES256", "kid": "2026-11", "typ": "JWT"}).encode())
    with pytest.raises(AuthError):
        verify_only.verify(f"{relabelled}.{p}.{s}", CFG)


# ---------------------------------------------------------------- API keys
def test_api_keys_hash_only_entropy_scope_revocation(tmp_path):
    store = APIKeyStore(tmp_path / "keys.json")
    key, rec = store.create("ci", ["chat", "models"], ttl_days=30)
    key2, _ = store.create("ui", ["*"], ttl_days=None)
    prefix, kid, secret = key.split("_", 2)
    assert prefix == "llmp" and kid == rec.id and len(base64.urlsafe_b64decode(secret + "=")) == 32   # 256 bits
    text = (tmp_path / "keys.json").read_text()
    assert key not in text and secret not in text and hashlib.sha256(key.encode()).hexdigest() in text
    assert oct((tmp_path / "keys.json").stat().st_mode & 0o777) == "0o600"
    assert store.verify(key, "chat").id == rec.id and store.verify(key2, "anything").name == "ui"
    with pytest.raises(AuthError, match="scope"):
        store.verify(key, "admin")
    for bad in [key[:-1] + ("x" if key[-1] != "x" else "y"), f"llmp_{'0' * 12}_{secret}", "", "llmp_short"]:
        with pytest.raises(AuthError, match="^invalid API key$"):                   # one message: no oracle
            store.verify(bad)
    store.revoke(rec.id)
    with pytest.raises(AuthError, match="revoked"):
        store.verify(key, "chat")
    assert store.verify(key2).name == "ui"                                           # others unaffected
    with pytest.raises(KeyError):
        store.revoke("ffffffffffff")


def test_api_key_expiry(tmp_path):
    store = APIKeyStore(tmp_path / "keys.json")
    key, _ = store.create("short", ["chat"], ttl_days=0.5 / 86400)                   # half a second
    assert store.verify(key)
    time.sleep(0.6)
    with pytest.raises(AuthError, match="expired"):
        store.verify(key)


def test_keys_cli(tmp_path):
    run = CliRunner().invoke
    store = str(tmp_path / "k.json")
    r = run(keys_app, ["create", "bot", "--scope", "chat", "--scope", "embed", "--store", store])
    assert r.exit_code == 0, r.output
    key = r.stdout.strip().splitlines()[0]
    assert key.startswith("llmp_") and APIKeyStore(store).verify(key, "embed")
    kid = key.split("_")[1]
    listing = run(keys_app, ["list", "--store", store]).stdout
    assert kid in listing and "active" in listing and key.split("_", 2)[2] not in listing
    assert run(keys_app, ["revoke", kid, "--store", store]).exit_code == 0
    assert "revoked" in run(keys_app, ["list", "--store", store]).stdout
    assert run(keys_app, ["revoke", "nope", "--store", store]).exit_code == 1


# ---------------------------------------------------------------- audit log
def make_log(path, n=6, key_env=None):
    log = AuditLog(path, key_env=key_env)
    for i in range(n):
        log.append("chat.completion", actor=f"key:{i:012x}", model="m", tokens=10 + i)
    return path.read_text().splitlines()


def rewrite(path, lines):
    path.write_text("\n".join(lines) + "\n")


def test_intact_log_verifies(tmp_path):
    p = tmp_path / "a.jsonl"; make_log(p)
    r = verify_log(p, None)
    assert r.ok and r.lines == 6
    assert CliRunner().invoke(audit_app, ["verify", str(p), "--key-env", "NO_SUCH_ENV"]).exit_code == 0


@pytest.mark.parametrize("tamper,bad_line", [
    (lambda ls: ls[:3] + [ls[3].replace('"tokens":13', '"tokens":99')] + ls[4:], 4),    # edit line 4
    (lambda ls: ls[:2] + ls[3:], 3),                                                    # delete line 3
    (lambda ls: [ls[0], ls[2], ls[1]] + ls[3:], 2),                                     # swap lines 2 and 3
    (lambda ls: ls[1:], 1),                                                             # delete the first line
    (lambda ls: ls[:-2], 5),                                                            # truncate the tail
    (lambda ls: ls[:-1] + [ls[-1].replace('"tokens":15', '"tokens":1')], 6),            # edit the last line
    (lambda ls: ls[:4] + ["{not json"] + ls[5:], 5),
])
def test_tampering_detected_at_the_right_line(tmp_path, tamper, bad_line):
    p = tmp_path / "a.jsonl"
    rewrite(p, tamper(make_log(p)))
    r = verify_log(p, None)
    assert not r.ok and r.bad_line == bad_line, r
    res = CliRunner().invoke(audit_app, ["verify", str(p), "--key-env", "NO_SUCH_ENV"])
    assert res.exit_code == 1 and f"{p}:{bad_line}:" in res.output


def test_hmac_key_stops_recomputed_chain(tmp_path, monkeypatch):
    "With a key, an attacker who edits a record and recomputes plain SHA-256 hashes is still caught."
    monkeypatch.setenv("AUDIT_KEY_TEST", "k" * 32)
    p = tmp_path / "a.jsonl"
    lines = make_log(p, key_env="AUDIT_KEY_TEST")
    assert verify_log(p, "AUDIT_KEY_TEST").ok
    rec = json.loads(lines[2]); rec["data"]["tokens"] = 0
    body = {k: v for k, v in rec.items() if k != "hash"}
    rec["hash"] = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    rewrite(p, lines[:2] + [json.dumps(rec, sort_keys=True, separators=(",", ":"))] + lines[3:])
    r = verify_log(p, "AUDIT_KEY_TEST")
    assert not r.ok and r.bad_line == 3


SECRETS = {
    "email": "maria.garcia@example.org", "phone": "+44 20 7946 0958", "card": "4111 1111 1111 1111",
    "ssn": "536-22-1234", "iban": "GB82 WEST 1234 5698 7654 32", "ip": "203.0.113.77",
    "aws": "AKIAIOSFODNN7EXAMPLE", "gh": "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "bearer": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abcdefghijklmnop", "apikey": "llmp_0123456789ab_" + "x" * 43,
    "pem": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----",
}


def test_audit_never_contains_raw_pii_or_secrets(tmp_path):
    p = tmp_path / "a.jsonl"
    log = AuditLog(p, key_env=None)
    prompt = "Hi, " + ", ".join(SECRETS.values())
    log.append("chat", actor=SECRETS["email"], prompt=prompt, messages=[{"role": "user", "content": prompt}],
               headers={"Authorization": "Bearer " + SECRETS["bearer"], "X-Api-Key": SECRETS["apikey"]},
               password="hunter2-secret", note="version 2.14.3 on 2024-05-01")
    text = p.read_text()
    for name, value in SECRETS.items():
        assert value not in text, name
    assert "hunter2" not in text and "version 2.14.3 on 2024-05-01" in text and verify_log(p, None).ok


def test_audit_with_presidio_scrubber_removes_names(tmp_path):
    from llm_platform.safety.pii import mask_pii
    p = tmp_path / "a.jsonl"
    AuditLog(p, scrub_str=lambda s: scrub_text(mask_pii(s)), key_env=None).append(
        "chat", prompt="I'm Maria Garcia, call +1 415 555 0132")
    text = p.read_text()
    assert "Maria" not in text and "555 0132" not in text and "<PERSON>" in text


# ---------------------------------------------------------------- encryption
@pytest.fixture
def rings():
    k1, k2 = base64.b64decode(generate_key()), base64.b64decode(generate_key())
    return KeyRing({"k1": k1}), KeyRing({"k1": k1, "k2": k2}), KeyRing({"k2": k2})


def test_encryption_round_trip_and_tamper_rejection(rings):
    r1, _, _ = rings
    tok = r1.encrypt(b"patient record 42", b"records.bin")
    assert r1.decrypt(tok, b"records.bin") == b"patient record 42"
    assert r1.encrypt(b"x") != r1.encrypt(b"x")                                        # fresh nonce
    raw = base64.urlsafe_b64decode(tok.split(".")[2] + "==")
    for i in (0, 11, 12, len(raw) - 17, len(raw) - 1):                                 # nonce, ciphertext, tag
        bad = bytearray(raw); bad[i] ^= 1
        with pytest.raises(DecryptError, match="failed authentication"):
            r1.decrypt(f"v1.k1.{b64url(bytes(bad))}", b"records.bin")
    with pytest.raises(DecryptError):
        r1.decrypt(tok, b"other.bin")                                                  # bound to its context
    with pytest.raises(DecryptError):
        r1.decrypt(f"v1.k1.{b64url(raw[:20])}", b"records.bin")                         # truncated


def test_rotation_re_encrypts_on_read(tmp_path, rings):
    r1, r12, r2 = rings
    p = write_encrypted(tmp_path / "data.enc", b"secret rows", r1)
    assert p.read_text().startswith("v1.k1.")
    assert read_encrypted(p, r12) == b"secret rows" and p.read_text().startswith("v1.k2.")
    assert read_encrypted(p, r2) == b"secret rows"                                     # old key no longer needed
    with pytest.raises(DecryptError, match="does not hold"):
        r1.decrypt(p.read_text(), b"data.enc")
    plain, new = r12.rotate(r12.encrypt(b"y"))
    assert plain == b"y" and new is None                                               # already on the newest key


def test_keys_come_from_env_or_keyfile(tmp_path, monkeypatch):
    k = generate_key()
    monkeypatch.delenv("LLM_PLATFORM_DATA_KEYS", raising=False)
    with pytest.raises(ValueError, match="LLM_PLATFORM_DATA_KEYS"):
        KeyRing.load()
    monkeypatch.setenv("LLM_PLATFORM_DATA_KEYS", f"old:{generate_key()},new:{k}")
    ring = KeyRing.load()
    assert ring.primary == "new" and ring.encrypt(b"z").startswith("v1.new.")
    kf = tmp_path / "keys.json"
    kf.write_text(json.dumps({"primary": "a", "keys": {"a": k, "b": generate_key()}}))
    assert KeyRing.load(CryptoConfig(keyfile=str(kf))).primary == "a"
    with pytest.raises(ValueError, match="32 bytes"):
        KeyRing({"short": b"0" * 16})
