"""Kamailio as a lab registrar/proxy (Debian ``kamailio`` + tls modules), started from a generated config.

    with Kamailio(tmp_path, users={"alice": "pw-a", "bob": "pw-b"}, tls=certs) as kam:
        kam.udp_port, kam.tcp_port, kam.tls_port, kam.realm
        kam.wait_for(r"LAB REGISTER aor=sip:alice@")   # log lines written by the config

REGISTER needs digest auth (``www_challenge`` with qop=auth, MD5 or SHA-256), INVITEs from
local users need proxy auth, calls are record-routed and relayed to registered contacts.
With ``msilo=True`` a MESSAGE to a user who is not registered is stored by Kamailio's ``msilo``
module (SQLite through ``db_sqlite``), answered 202 and logged ``LAB STORED ruri``; a REGISTER dumps
that user's stored messages to the new contact (``m_dump``); msilo deletes a dumped message when the
contact answers 2xx and offers it again at the next REGISTER after any other final answer (its reply
check runs every second here: ``check_time`` 1, default 60). The store holds what was sent: for
secure messages, ciphertext only. ``tcp_rd_buf_size`` is raised to 64 KiB: Kamailio's default
TLS/TCP read buffer drops any SIP message over 16 KiB, and a secure message with a 16 KiB attachment
(voice message) is ~24 KiB.
``domains`` adds SIP domains this proxy also serves (aliases; users are matched by name, so names
must be distinct across domains).
With ``public_host`` (an address of this machine on a "public" network, e.g. the NAT lab's
``HOST_IP``) it also listens there and serves clients behind NATs as a provider's proxy does
(``nathelper``): a REGISTER from behind a NAT is saved with the address it came from (``received``),
so calls to that user go back over the flow it opened; the Contact of a NATed dialog request or
answer gets an ``alias`` of its real source, which in-dialog requests are routed to
(``handle_ruri_alias``).
The config logs ``LAB REGISTER aor=… contact=… expires=… proto=… src=ip:port`` and
``LAB RELAY method ruri proto=… [dst=…]`` (``dst``: where a new request goes when not to its R-URI, e.g.
a registration's ``received`` address; each prefixed with the Call-ID); ``LAB NATED method src`` when a
request came from behind a NAT.
With ``flows`` it does the same for every client on TCP or TLS, NATed or not (RFC 5626 §5.3: requests for
a user go over the connection its REGISTER came on, as a provider's proxy facing NATs does): calls then
reach a phone over the connection it opened instead of a new one to its Contact's port. Off by default, so
the lab also exercises a proxy connecting to the phone (``bench call`` turns it on; see there).
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path
from types import TracebackType

from lab.certs import CertFiles
from lab.proc import LogProcess, free_port, wait_tcp

MODULE_DIR = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"
MODULES = ("tm", "tmx", "sl", "rr", "pv", "maxfwd", "usrloc", "registrar", "textops", "siputils",
           "xlog", "sanity", "auth", "kex", "corex")


def _quote(text: str) -> str:
    if any(c in text for c in '"\\\n$'):
        raise ValueError("lab user names and passwords must not contain quotes, backslashes or $")
    return text


class Kamailio:
    """A foreground Kamailio on 127.0.0.1 with UDP+TCP (same port) and optional TLS listeners."""

    def __init__(self, workdir: Path, users: dict[str, str], *, tls: CertFiles | None = None,
                 algorithm: str = "MD5", realm: str = "lab.test", min_expires: int = 1,
                 auth_invite: bool = True, stun: bool = False, msilo: bool = False,
                 domains: tuple[str, ...] = (), public_host: str | None = None, flows: bool = False) -> None:
        self.workdir = Path(workdir)
        self.users = users
        self.tls = tls
        self.algorithm = algorithm
        self.realm = realm
        self.min_expires = min_expires
        self.auth_invite = auth_invite
        self.stun = stun   # answer STUN Binding requests on the SIP UDP port (RFC 5626 §4.4.2 keep-alives)
        self.msilo = msilo
        self.domains = domains  # more SIP domains served (aliases); digest realm and users stay shared
        self.public_host = public_host  # also listen here, and serve NATed clients (nathelper)
        self.flows = flows  # route to TCP/TLS clients over the connection they registered on
        self.udp_port = free_port()
        self.tcp_port = self.udp_port
        self.tls_port = free_port(also_tcp=True) if tls else None
        self.proc: LogProcess | None = None

    @property
    def uri(self) -> str:
        return f"sip:127.0.0.1:{self.udp_port}"

    def config(self) -> str:
        """The generated kamailio.cfg text."""
        hosts = ["127.0.0.1"] + ([self.public_host] if self.public_host else [])
        listens = [f"listen={proto}:{host}:{port}" for host in hosts
                   for proto, port in (("udp", self.udp_port), ("tcp", self.tcp_port), ("tls", self.tls_port))
                   if port is not None]
        mods = list(MODULES)
        if self.tls:
            mods.append("tls")
        if self.stun:
            mods.append("stun")
        nat_params = nat_test = nat_register = nat_alias = nat_reply = ""
        if self.public_host or self.flows:
            mods.append("nathelper")
            nat_params = ('modparam("nathelper", "received_avp", "$avp(RECEIVED)")\n'
                          'modparam("registrar", "received_avp", "$avp(RECEIVED)")\n')
            # 1: Contact is a private address; 2: Via differs from the source; 16: so does the port
            nated = " || ".join((['nat_uac_test("19")'] if self.public_host else [])
                                + (["proto == TCP || proto == TLS"] if self.flows else []))
            nat_test = f"""
    if ({nated}) {{
        xlog("L_NOTICE", "LAB NATED $rm src=$si:$sp\\n");
        if (is_method("REGISTER")) fix_nated_register(); else if (is_present_hf("Contact")) add_contact_alias();
    }}"""
            nat_register = " src=$si:$sp"
            nat_alias = " handle_ruri_alias();"
            replied = " || ".join((['nat_uac_test("1")'] if self.public_host else [])
                                  + (["proto == TCP || proto == TLS"] if self.flows else []))
            nat_reply = f"""
onreply_route {{
    if ({replied}) add_contact_alias();
}}
"""
        pw_lines = "\n".join(f'    if ($au == "{_quote(u)}") $var(pw) = "{_quote(p)}";' for u, p in self.users.items())
        tls_params = f'modparam("tls", "config", "{self.workdir / "tls.cfg"}")\n' if self.tls else ""
        silo_params = silo_store = silo_dump = ""
        if self.msilo:
            mods += ["db_sqlite", "msilo"]
            silo_params = (f'modparam("msilo", "db_url", "sqlite:///{self.silo_db}")\n'
                           'modparam("msilo", "add_date", 0)\nmodparam("msilo", "expire_time", 604800)\n'
                           # look at dump replies every second (default 60): 2xx deletes, else re-offered
                           'modparam("msilo", "check_time", 1)\n'
                           # dumped MESSAGEs go through this proxy's own routing to the new contact
                           f'modparam("msilo", "outbound_proxy", "sip:127.0.0.1:{self.tcp_port};transport=tcp")\n')
            silo_dump = """
        if ($hdr(Expires) != "0") { if (m_dump()) xlog("L_NOTICE", "LAB DUMPED $tu\\n"); }"""
            silo_store = """
    if (is_method("MESSAGE") && !registered("location")) {
        if (!t_newtran()) { sl_reply_error(); exit; }
        if (m_store("$ru")) { xlog("L_NOTICE", "LAB STORED $ru\\n"); t_reply("202", "Accepted"); }
        else { xlog("L_NOTICE", "LAB NOTSTORED $ru\\n"); t_reply("503", "Service Unavailable"); }
        exit;
    }"""
        invite_auth = """
    if (is_method("INVITE") && from_uri == myself) {
        if (!is_present_hf("Proxy-Authorization")) { proxy_challenge("$var(realm)", "1"); exit; }
        route(PASSWD);
        if (!pv_proxy_authenticate("$var(realm)", "$var(pw)", "0")) {
            xlog("L_NOTICE", "LAB AUTHFAIL $au\n");
            proxy_challenge("$var(realm)", "1");
            exit;
        }
        consume_credentials();
    }""" if self.auth_invite else ""
        return f"""#!KAMAILIO
debug=2
log_stderror=yes
log_prefix="{{$mt $hdr(CSeq) $ci}} "
children=2
tcp_children=2
auto_aliases=no
alias="{self.realm}"
{chr(10).join(f'alias="{_quote(d)}"' for d in self.domains)}
{'enable_tls=yes' if self.tls else ''}
tcp_accept_no_cl=no
tcp_rd_buf_size=65536
{chr(10).join(listens)}
mpath="{MODULE_DIR}"
{chr(10).join(f'loadmodule "{m}.so"' for m in mods)}
modparam("usrloc", "db_mode", 0)
modparam("registrar", "min_expires", {self.min_expires})
modparam("registrar", "default_expires", 60)
modparam("auth", "secret", "lab-nonce-secret")
modparam("auth", "algorithm", "{self.algorithm}")
modparam("rr", "enable_double_rr", 1)
{tls_params}{silo_params}{nat_params}
request_route {{
    $var(realm) = "{self.realm}";
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (!sanity_check("17895", "7")) {{ xlog("L_NOTICE", "LAB MALFORMED $rm\\n"); exit; }}{nat_test}
    if (has_totag()) {{
        if (loose_route()) {{{nat_alias} xlog("L_NOTICE", "LAB RELAY $rm $ru proto=$pr\\n"); t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) t_relay(); exit; }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) t_relay(); exit; }}
    t_check_trans();
    if (is_method("REGISTER")) {{
        if (!is_present_hf("Authorization")) {{ www_challenge("$var(realm)", "1"); exit; }}
        route(PASSWD);
        if (!pv_www_authenticate("$var(realm)", "$var(pw)", "0")) {{
            xlog("L_NOTICE", "LAB AUTHFAIL $au\n");
            www_challenge("$var(realm)", "1");
            exit;
        }}
        consume_credentials();
        xlog("L_NOTICE", "LAB REGISTER aor=$tu contact=$ct expires=$hdr(Expires) proto=$pr{nat_register}\\n");
        if (!save("location")) {{ sl_reply_error(); exit; }}{silo_dump}
        exit;
    }}
    if (is_method("OPTIONS") && uri == myself && $rU == $null) {{ sl_send_reply("200", "OK"); exit; }}{invite_auth}
{silo_store}
    if (is_method("INVITE")) record_route();
    if (!lookup("location")) {{ xlog("L_NOTICE", "LAB NOTFOUND $rm $ru\\n"); sl_send_reply("404", "Not Found"); exit; }}
    xlog("L_NOTICE", "LAB RELAY $rm $ru proto=$pr dst=$du\\n");
    if (!t_relay()) sl_reply_error();
    exit;
}}

{nat_reply}
route[PASSWD] {{
    $var(pw) = "";
{pw_lines}
}}
"""

    @property
    def silo_db(self) -> Path:
        return self.workdir / "msilo.sqlite"

    def stored_messages(self) -> list[tuple[str, str, str, bytes]]:
        """What msilo holds now: (src_addr, dst_addr, ctype, body) per stored MESSAGE."""
        with sqlite3.connect(self.silo_db) as db:
            rows = db.execute("SELECT src_addr, dst_addr, ctype, body FROM silo")
            return [(a, b, c, bytes(d)) for a, b, c, d in rows]

    def _make_silo_db(self) -> None:
        schema = Path("/usr/share/kamailio/db_sqlite/msilo-create.sql").read_text()
        with sqlite3.connect(self.silo_db) as db:
            db.execute("CREATE TABLE IF NOT EXISTS version (table_name VARCHAR(32) NOT NULL, table_version "
                       "INTEGER DEFAULT 0 NOT NULL, CONSTRAINT version_table_name_idx UNIQUE (table_name))")
            if not db.execute("SELECT 1 FROM version WHERE table_name = 'silo'").fetchone():
                db.executescript(schema)

    def start(self) -> Kamailio:
        binary = shutil.which("kamailio") or "/usr/sbin/kamailio"
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.msilo:
            self._make_silo_db()
        (self.workdir / "run").mkdir(exist_ok=True)
        if self.tls:
            (self.workdir / "tls.cfg").write_text(
                "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n"
                f"private_key = {self.tls.key}\ncertificate = {self.tls.cert}\nca_list = {self.tls.ca}\n\n"
                "[client:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n")
        cfg = self.workdir / "kamailio.cfg"
        cfg.write_text(self.config())
        self.proc = LogProcess([binary, "-f", str(cfg), "-DD", "-E", "-m", "64", "-M", "16",
                                "-Y", str(self.workdir / "run"), "-w", str(self.workdir)])
        try:
            wait_tcp(self.tcp_port, 15.0, self.proc)
            if self.tls_port:
                wait_tcp(self.tls_port, 15.0, self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_for(self, pattern: str, timeout: float = 10.0, count: int = 1) -> list[str]:
        """Block until Kamailio logged ``count`` lines matching ``pattern``."""
        assert self.proc is not None
        return self.proc.wait_for(pattern, timeout, count)

    async def await_log(self, pattern: str, timeout: float = 10.0, count: int = 1) -> list[str]:
        """:meth:`wait_for` without blocking the event loop."""
        return await asyncio.to_thread(self.wait_for, pattern, timeout, count)

    def matching(self, pattern: str) -> list[str]:
        """Log lines seen so far that match ``pattern``."""
        assert self.proc is not None
        return self.proc.matching(pattern)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def __enter__(self) -> Kamailio:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
