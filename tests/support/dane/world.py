"""A DNSSEC world for the DANE tests, inside a network namespace of its own.

- the zone ``dane.test`` signed at start with ``ldns-signzone`` (ECDSA P-256
  KSK and ZSK), one TLSA signature then broken on purpose (the *bogus* case),
  and the unsigned child ``insecure.dane.test`` delegated without a DS (the
  *insecure* case), both served by Knot on 127.0.0.2:53;
- Unbound on 127.0.0.1:53 validating with the KSK's DS as its only trust
  anchor; ``/etc/netns/<ns>/resolv.conf`` points at it (``options trust-ad``:
  glibc passes the AD bit on only then), so Postfix in the namespace uses it;
- MX hosts (aiosmtpd, tests/support/dane/mxhosts.py) on port 25 of 127.0.1.N, with
  trustme certificates (root CA, an intermediate that signs every leaf; the
  hosts send leaf and intermediate);
- a private Postfix (``smtp_tls_security_level = dane``) that delivers the
  same recipients: its verdict is the reference smtpmail's must agree with.

Each :class:`Case` is one recipient domain whose MX host and TLSA records
play one situation of RFC 7672. Everything runs as root (namespaces, port
25, Postfix); a missing program fails the tests (scripts/test.sh installs
them).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from support.privatepostfix import PrivatePostfix, Setting

HERE = Path(__file__).resolve().parent
PROGRAMS = ("ip", "knotd", "kdig", "unbound", "ldns-keygen", "ldns-signzone", "postfix")
ZONE = "dane.test"
SENDER = "sender@client.test"
#: main.cf of the reference client, which only sends (no smtpd): DANE as RFC 7672
#: says, DNSSEC through libc and Unbound.
SETTINGS: dict[str, Setting] = {
    "myhostname": "mta.client.test",
    "mydomain": "client.test",
    "myorigin": "$mydomain",
    "smtp_tls_security_level": "dane",
    "smtp_dns_support_level": "dnssec",
    "smtp_host_lookup": "dns",
    "smtp_tls_loglevel": "1",
    "smtp_connect_timeout": "10s",
    "smtp_address_preference": "ipv4",
}
#: master.cf services besides the core: pickup takes what sendmail queues, smtp sends.
SERVICES = ("pickup", "tlsmgr", "flush", "smtp", "relay", "showq")
#: A Postfix smtp(8) verdict line: "QUEUEID: to=<rcpt>, relay=..., status=sent (...)".
_STATUS = re.compile(r"postfix/smtp\[\d+\]: \w+: to=<([^>]+)>.*status=(\w+)")


@dataclass(frozen=True)
class Host:
    """One MX host: which certificate it shows, whether it offers STARTTLS."""

    #: "good": a leaf for its own name; "wrong-name": a leaf for another name;
    #: "expired": its own name, out of date; "none": no STARTTLS at all; a key
    #: of MADE_CHAINS: its own name, under a CA made with the extensions it needs.
    cert: str = "good"
    #: Offers REQUIRETLS (RFC 8689) after STARTTLS.
    requiretls: bool = False


@dataclass(frozen=True)
class Case:
    """A recipient domain ``<label>.dane.test`` (or in the insecure zone) and its MX."""

    label: str
    host: Host
    #: TLSA records as "usage selector mtype WHAT"; WHAT is leaf, intermediate,
    #: other (a key no host has), a CA of PKI.made, or raw hex.
    tlsa: tuple[str, ...] = ()
    #: "secure", "insecure" (MX host in the unsigned child zone), "bogus" (TLSA signature
    #: broken), "insecure-mx" (the domain's MX answer itself is insecure).
    zone: str = "secure"

    @property
    def domain(self) -> str:
        if self.zone == "insecure-mx":
            return f"{self.label}.insecure.{ZONE}"
        return f"{self.label}.{ZONE}"

    @property
    def mx(self) -> str:
        if self.zone == "insecure":
            return f"mx-{self.label}.insecure.{ZONE}"
        return f"mx-{self.label}.{ZONE}"

    @property
    def recipient(self) -> str:
        return f"user@{self.domain}"


@dataclass
class Issued:
    """A certificate and its key, made here with the extensions a case needs
    (trustme's CAs always carry keyCertSign and no name constraints)."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        name: str,
        *,
        ca: bool = False,
        path_length: int | None = None,
        cert_sign: bool = True,
        permitted: list[x509.GeneralName] | None = None,
        excluded: list[x509.GeneralName] | None = None,
        san: list[x509.GeneralName] | None = None,
        subject: x509.Name | None = None,
    ) -> Issued:
        """A certificate for ``name`` signed by this one: a CA (with
        ``path_length``, keyCertSign or not, name constraints) or a server's
        leaf (its subjectAltName ``san``, by default ``name`` as a DNS name).
        The subject is ``CN=name`` unless given."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        usage = x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=not ca,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=ca and cert_sign,
            crl_sign=ca,
            encipher_only=False,
            decipher_only=False,
        )
        common_name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, name)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject or common_name)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
            .add_extension(usage, critical=True)
        )
        if permitted or excluded:
            constraints = x509.NameConstraints(
                permitted_subtrees=permitted or None, excluded_subtrees=excluded or None
            )
            builder = builder.add_extension(constraints, critical=True)
        if not ca:
            server = x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH])
            builder = builder.add_extension(
                x509.SubjectAlternativeName(san if san is not None else [x509.DNSName(name)]),
                critical=False,
            ).add_extension(server, critical=False)
        return Issued(builder.sign(self.key, hashes.SHA256()), key)


#: Host kinds whose chain goes through a CA made here, and how: the CA the
#: leaf's issuer is (by its name in PKI.made) and what the host sends above its leaf.
MADE_CHAINS: dict[str, tuple[str, tuple[str, ...]]] = {
    # A CA whose keyUsage lacks keyCertSign, under the (anchor) intermediate.
    "under-no-certsign": ("no-certsign", ("no-certsign", "intermediate")),
    # The same CA as the anchor itself.
    "no-certsign-anchor": ("no-certsign", ("no-certsign",)),
    # pathLenConstraint 0, then a CA below it that issues the leaf: one too deep.
    "too-deep": ("below-pathlen0", ("below-pathlen0", "pathlen0")),
    # pathLenConstraint 0 issuing the leaf itself: allowed.
    "pathlen0": ("pathlen0", ("pathlen0",)),
    # Name constraints: DNS names under elsewhere.test only; under dane.test.
    "outside-constraints": ("constrained-elsewhere", ("constrained-elsewhere",)),
    "inside-constraints": ("constrained-here", ("constrained-here",)),
}


@dataclass
class PKI:
    root: trustme.CA = field(default_factory=trustme.CA)

    def __post_init__(self) -> None:
        self.intermediate = self.root.create_child_ca()
        self.other = self.intermediate.issue_cert("other.invalid")
        above = Issued(
            x509.load_pem_x509_certificate(self.intermediate.cert_pem.bytes()),
            serialization.load_pem_private_key(
                self.intermediate.private_key_pem.bytes(), password=None
            ),  # type: ignore[arg-type]
        )
        pathlen0 = above.issue("pathlen0 CA", ca=True, path_length=0)
        #: The CAs made here, by name (a TLSA record names them as WHAT).
        self.made = {
            "no-certsign": above.issue("no-certsign CA", ca=True, cert_sign=False),
            "pathlen0": pathlen0,
            "below-pathlen0": pathlen0.issue("below-pathlen0 CA", ca=True),
            "constrained-elsewhere": above.issue(
                "constrained CA", ca=True, permitted=[x509.DNSName("elsewhere.test")]
            ),
            "constrained-here": above.issue(
                "constrained CA", ca=True, permitted=[x509.DNSName(ZONE)]
            ),
        }

    def chain(self, case: Case) -> tuple[bytes, bytes]:
        """The PEM chain the host sends (leaf first) and its key's PEM."""
        kind = case.host.cert
        if kind in MADE_CHAINS:
            issuer, sent = MADE_CHAINS[kind]
            leaf = self.made[issuer].issue(case.mx)
            pems = [leaf.pem] + [
                self.intermediate.cert_pem.bytes() if n == "intermediate" else self.made[n].pem
                for n in sent
            ]
            key = leaf.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            return b"".join(pems), key
        made = self.leaf(case)
        return b"".join(p.bytes() for p in made.cert_chain_pems), made.private_key_pem.bytes()

    def leaf(self, case: Case) -> trustme.LeafCert:
        kind = case.host.cert
        if kind == "wrong-name":
            return self.intermediate.issue_cert(f"wrong-{case.mx}")
        if kind == "expired":
            now = datetime.datetime.now(datetime.UTC)
            return self.intermediate.issue_cert(
                case.mx,
                not_before=now - datetime.timedelta(days=30),
                not_after=now - datetime.timedelta(days=1),
            )
        return self.intermediate.issue_cert(case.mx)


def _der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def _spki(der: bytes) -> bytes:
    return (
        x509.load_der_x509_certificate(der)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def tlsa_rdata(spec: str, leaf_der: bytes, pki: PKI) -> str:
    usage, selector, mtype, what = spec.split()
    if what in ("leaf", "intermediate", "other") or what in pki.made:
        der = {
            "leaf": leaf_der,
            "intermediate": _der(pki.intermediate.cert_pem.bytes()),
            "other": _der(pki.other.cert_chain_pems[0].bytes()),
            **{name: made.der for name, made in pki.made.items()},
        }[what]
        selected = der if selector == "0" else _spki(der)
        digest: Callable[[bytes], Any] = {
            "0": lambda b: b,
            "1": lambda b: hashlib.sha256(b).digest(),
            "2": lambda b: hashlib.sha512(b).digest(),
        }[mtype]
        data = digest(selected).hex()
    else:
        data = what
    return f"{usage} {selector} {mtype} {data}"


def missing_programs() -> list[str]:
    found = [shutil.which(p) or shutil.which(p, path="/usr/sbin:/sbin") for p in PROGRAMS]
    return [p for p, f in zip(PROGRAMS, found, strict=True) if f is None]


class DANEWorld:
    """Namespace, zones, Knot, Unbound, MX hosts; :meth:`postfix` and :meth:`smtpmail` send."""

    def __init__(self, cases: list[Case]) -> None:
        self.cases = cases
        self.ns = f"smtpmail-dane-{os.getpid()}"
        self.dir = Path(tempfile.mkdtemp(prefix="smtpmail-dane-"))
        self.dir.chmod(0o755)
        self.pki = PKI()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.addresses = {c.label: f"127.0.1.{i + 1}" for i, c in enumerate(cases)}
        self.mta: PrivatePostfix | None = None

    # -- start / stop ---------------------------------------------------------

    def start(self) -> DANEWorld:
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        self.netns_dir = Path("/etc/netns") / self.ns
        self.netns_dir.mkdir(parents=True, exist_ok=True)
        (self.netns_dir / "resolv.conf").write_text(
            "nameserver 127.0.0.1\noptions trust-ad edns0\n"
        )
        # Postfix asks libc for the host's name and its own addresses: a hosts file of its own.
        (self.netns_dir / "hosts").write_text("127.0.0.1 localhost mta.client.test\n")
        self.run("ip", "link", "set", "lo", "up")
        hosts = self._write_hosts()
        self._write_zones(hosts)
        self._start_knot()
        self._start_unbound()
        self._start_mx(hosts)
        return self

    def close(self) -> None:
        if self.mta is not None:
            self.mta.stop()
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # Postfix's daemons outlive "postfix stop" by a moment: end those of this namespace.
        for _ in range(50):
            pids = self.run("ip", "netns", "pids", self.ns, check=False).stdout.split()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), 15)
            time.sleep(0.1)
        subprocess.run(["ip", "netns", "del", self.ns], check=False)
        shutil.rmtree(self.netns_dir, ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def run(self, *args: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.ns, *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=check,
            **kw,
        )

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 - the process keeps it
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, *args], stdout=log, stderr=subprocess.STDOUT
        )
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        try:
            return (self.dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""

    # -- certificates and zones ---------------------------------------------------

    def _write_hosts(self) -> list[dict[str, Any]]:
        hosts = []
        for case in self.cases:
            chain, key_pem = self.pki.chain(case)
            cert, key = self.dir / f"{case.label}.pem", self.dir / f"{case.label}.key"
            cert.write_bytes(chain)
            key.write_bytes(key_pem)
            hosts.append({
                "label": case.label,
                "address": self.addresses[case.label],
                "name": case.mx,
                "cert": str(cert),
                "key": str(key),
                "starttls": case.host.cert != "none",
                "requiretls": case.host.requiretls,
                "leaf_der": x509.load_pem_x509_certificates(chain)[0].public_bytes(
                    serialization.Encoding.DER
                ),
            })  # fmt: skip
        return hosts

    def _write_zones(self, hosts: list[dict[str, Any]]) -> None:
        soa = "@ SOA ns.dane.test. hostmaster.dane.test. 1 3600 600 86400 300"
        parent = [f"$ORIGIN {ZONE}.", "$TTL 300", soa, "@ NS ns", "ns A 127.0.0.2"]
        parent.append("insecure NS ns")  # no DS: an insecure delegation (RFC 4035 §5.2)
        child = [f"$ORIGIN insecure.{ZONE}.", "$TTL 300", soa, f"@ NS ns.{ZONE}."]
        self.bogus: list[str] = []
        for case, host in zip(self.cases, hosts, strict=True):
            domain_zone = child if case.zone == "insecure-mx" else parent
            mx_zone = child if case.zone == "insecure" else parent
            domain_zone.append(f"{case.domain}. MX 10 {case.mx}.")
            mx_zone.append(f"{case.mx}. A {host['address']}")
            for spec in case.tlsa:
                rdata = tlsa_rdata(spec, host["leaf_der"], self.pki)
                mx_zone.append(f"_25._tcp.{case.mx}. TLSA {rdata}")
            if case.zone == "bogus":
                self.bogus.append(f"_25._tcp.{case.mx}.")
        (self.dir / "parent.zone").write_text("\n".join(parent) + "\n")
        (self.dir / "child.zone").write_text("\n".join(child) + "\n")
        keygen = ["ldns-keygen", "-a", "ECDSAP256SHA256"]
        ksk = self._local(*keygen, "-k", ZONE).stdout.strip()
        zsk = self._local(*keygen, ZONE).stdout.strip()
        self._local("ldns-signzone", "-f", "parent.signed", "parent.zone", ksk, zsk)
        shutil.copy(self.dir / f"{ksk}.ds", self.dir / "anchor.ds")
        self._break_signatures(self.dir / "parent.signed")

    def _local(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, cwd=self.dir, capture_output=True, text=True, check=True)

    def _break_signatures(self, signed: Path) -> None:
        """Flip bits in the RRSIG over each bogus case's TLSA RRset: valid form, wrong signature."""
        lines = signed.read_text().splitlines()
        for i, line in enumerate(lines):
            parts = line.split()
            if len(parts) > 5 and parts[0] in self.bogus and parts[3:5] == ["RRSIG", "TLSA"]:
                sig = parts[-1]
                flipped = ("B" if sig[0] == "A" else "A") + sig[1:]
                lines[i] = line[: line.rindex(sig)] + flipped
        signed.write_text("\n".join(lines) + "\n")

    # -- servers ------------------------------------------------------------------

    def _start_knot(self) -> None:
        (self.dir / "knotdb").mkdir()
        (self.dir / "knot.conf").write_text(
            f"""server:
    listen: 127.0.0.2@53
    rundir: {self.dir}
database:
    storage: {self.dir}/knotdb
log:
  - target: stderr
    any: info
template:
  - id: default
    storage: {self.dir}
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
    semantic-checks: off
zone:
  - domain: {ZONE}
    file: parent.signed
  - domain: insecure.{ZONE}
    file: child.zone
"""
        )
        self._spawn("knot", "knotd", "-c", str(self.dir / "knot.conf"))
        self._wait("Knot to load the zones", lambda: "loaded, serial" in self.log("knot")
                   and self.log("knot").count("loaded, serial") >= 2)  # fmt: skip

    def _start_unbound(self) -> None:
        (self.dir / "unbound.conf").write_text(
            f"""server:
    interface: 127.0.0.1
    port: 53
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{self.dir}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 1
    val-log-level: 2
    do-ip6: no
    do-not-query-localhost: no
    access-control: 127.0.0.0/8 allow
    module-config: "validator iterator"
    trust-anchor-file: "{self.dir}/anchor.ds"
    local-zone: "test." nodefault
    qname-minimisation: no
    cache-max-negative-ttl: 1
stub-zone:
    name: "{ZONE}."
    stub-addr: 127.0.0.2
remote-control:
    control-enable: no
"""
        )
        self._spawn("unbound", "unbound", "-d", "-c", str(self.dir / "unbound.conf"))

        def answers() -> bool:
            done = self.run("kdig", "@127.0.0.1", "+short", f"ns.{ZONE}", "A", check=False)
            return "127.0.0.2" in done.stdout

        self._wait("Unbound to answer", answers)

    def _start_mx(self, hosts: list[dict[str, Any]]) -> None:
        self.spool = self.dir / "spool"
        config = {
            "spool": str(self.spool),
            "hosts": [{k: v for k, v in h.items() if k != "leaf_der"} for h in hosts],
        }
        (self.dir / "mx.json").write_text(json.dumps(config))
        self._spawn("mx", sys.executable, str(HERE / "mxhosts.py"), str(self.dir / "mx.json"))
        self._wait("the MX hosts to listen", lambda: "ready" in self.log("mx"))

    def _wait(self, what: str, probe: Callable[[], bool], limit: float = 30.0) -> None:
        deadline = time.monotonic() + limit
        while not probe():
            for proc in self.procs:
                if proc.poll() is not None:
                    logs = "\n".join(f"{n}: {self.log(n)}" for n in ("knot", "unbound", "mx"))
                    raise RuntimeError(f"a server of the DANE world exited:\n{logs}")
            if time.monotonic() > deadline:
                raise AssertionError(f"gave up waiting for {what}")
            time.sleep(0.05)

    def received(self, case: Case) -> list[dict[str, Any]]:
        folder = self.spool / self.addresses[case.label]
        if not folder.is_dir():
            return []
        return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]

    # -- the two senders ------------------------------------------------------------

    def smtpmail(self, mode: str, recipients: list[str], *flags: str) -> dict[str, dict[str, Any]]:
        """smtpmail.deliver (``sync``) or deliver_async (``async``): recipient -> outcome."""
        script = str(HERE / "deliver.py")
        done = self.run(sys.executable, script, mode, *flags, *recipients, check=False)
        if done.returncode != 0:
            raise AssertionError(f"deliver.py failed:\n{done.stdout}\n{done.stderr}")
        report = json.loads(done.stdout)
        return {r["recipient"]: r for r in report["recipients"]}

    def postfix(self, recipients: list[str]) -> dict[str, str]:
        """Postfix's DANE client delivers the same message: recipient -> its log's verdict."""
        self.mta = PrivatePostfix(
            self.dir / "postfix",
            SETTINGS,
            SERVICES,
            launch=["ip", "netns", "exec", self.ns],
        )
        self.mta.start()
        etc = str(self.mta.config)
        message = f"From: {SENDER}\nSubject: dane\n\nDANE test\n"
        self.run("sendmail", "-C", etc, "-f", SENDER, *recipients, input=message)
        verdicts: dict[str, str] = {}

        def all_decided() -> bool:
            text = self.postfix_log()
            for rcpt, status in _STATUS.findall(text):
                verdicts.setdefault(rcpt, status)
            return all(r in verdicts for r in recipients)

        try:
            self._wait("Postfix to decide every recipient", all_decided, limit=90)
        except AssertionError:
            raise AssertionError(f"Postfix log:\n{self.postfix_log()}") from None
        return verdicts

    def postfix_log(self) -> str:
        return "" if self.mta is None else self.mta.log()
