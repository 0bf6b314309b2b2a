"""deploy/, without servers: the NATS cluster configs parse with the packaged nats-server
(`-t`, test and exit), the nodes are distinct and routed to each other, every password
is a bcrypt hash and no plain one is in a config, each user reads only its own inbox,
the service users' permissions are exactly what the code declares, publishes and
consumes (and nothing of another's durable), the person keys are created and read by
the services and deleted by the operator only, the operators are split into one that
looks and one that acts (and erases and exports people), nobody may update, purge or
delete a stream but as the admin declares them, the web user may send only the
commands the site's pages send, the env examples name real settings and log in as the
right user, and the systemd units start the right thing.

What these files say is checked against a real three-node cluster in
tests/integration/test_deploy_cluster.py and test_deploy_permissions.py.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import shutil
import subprocess
from importlib.util import find_spec
from pathlib import Path

import pytest
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from contracts.audit_v1 import ActionRecorded
from contracts.people_v1 import ERASED_FACTS, EXPORT_COMMANDS, HOLDERS, PersonErasureRequested
from contracts.subscriptions_v1 import ShowDocument
from contracts.system_v1 import (
    DOORS,
    SERVICES,
    dead_letters_subject,
    health_subject,
    rebuild_subject,
    redrive_subject,
    replay_subject,
)
from kernel import production
from kernel.personal import KEY_SUBJECT, KEYS_STREAM, SHREDDED_SUBJECT, ensure_keys_stream
from kernel.settings import Settings, inbox_prefix
from kernel.streams import (
    DLQ_PREFIX,
    DLQ_STREAM,
    OPS_STREAM,
    PEOPLE_STREAM,
    STREAMS,
    stream_config,
    streams_of,
)
from services.web.settings import WebSettings
from tests.deploy_support import (
    CLIENTS,
    DEPLOY,
    ENV_DIR,
    NATS_DIR,
    NODES,
    OPERATORS,
    PASSWORDS_EXAMPLE,
    SYSTEMD_DIR,
    USERS,
    consumed_streams,
    dummy_env,
    durables,
    example_password,
    host_port,
    nats_test,
    node,
    password_hashes,
    permissions,
    read_env,
    stage,
    user_block,
    users_in_accounts,
    web_commands,
)
from vestry.natsserver import binary
from vestry.ops import OPS_SUBJECTS

BCRYPT = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")


def matches(pattern: str, subject: str) -> bool:
    """Whether NATS subject ``pattern`` (``*``, ``>``) covers ``subject``."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


def may_publish(user: str, subject: str) -> bool:
    """What accounts.conf says of ``user`` publishing ``subject`` (allow, then deny)."""
    lists = permissions(user)
    allowed = any(matches(p, subject) for p in lists["publish"])
    return allowed and not any(matches(p, subject) for p in lists["publish_deny"])


def may_subscribe(user: str, subject: str) -> bool:
    return any(matches(p, subject) for p in permissions(user)["subscribe"])


def test_the_matcher_reads_subjects_as_nats_does() -> None:
    assert matches("a.*", "a.b") and not matches("a.*", "a.b.c") and not matches("a.*", "a")
    assert matches("a.>", "a.b.c") and not matches("a.>", "a")
    assert matches(">", "_INBOX_x.y") and matches("*.>", "_INBOX_x.y")
    assert not matches("_INBOX_web.>", "_INBOX_webx.y")


# The node configs


@pytest.mark.parametrize("name", NODES)
def test_node_config_parses_with_the_packaged_server(name: str, tmp_path: Path) -> None:
    result = nats_test(stage(tmp_path) / f"{name}.conf", dummy_env())
    assert result.returncode == 0, result.stderr + result.stdout
    assert "is valid" in result.stderr + result.stdout


def test_passwords_are_bcrypt_hashes_and_no_plain_password_is_in_a_config(
    tmp_path: Path,
) -> None:
    hashes = password_hashes()
    assert set(hashes) == set(USERS), sorted(set(hashes) ^ set(USERS))
    assert sorted(users_in_accounts()) == sorted(USERS)
    for user, value in hashes.items():
        match = BCRYPT.fullmatch(value)
        assert match, f"{user}: not a bcrypt hash"
        assert int(match.group(1)) >= 10, f"{user}: bcrypt cost {match.group(1)} is too low"
        accounts = (NATS_DIR / "accounts.conf").read_text()
        assert re.search(rf"user:\s*{user}\s*,?\s*password:\s*\${user}_hash\b", accounts), user
    configs = "".join(path.read_text() for path in NATS_DIR.iterdir())
    assert not re.search(r"password:\s*[^$\s]", configs), "a password written into a config"
    for user in USERS:  # no plain example password in deploy/nats or the nodes' environment
        assert example_password(user) not in configs
        assert example_password(user) not in (ENV_DIR / "nats.env.example").read_text()
    assert len(set(hashes.values())) == len(hashes), "two users share a hash"
    # The nodes do not start without passwords.conf, nor with a user's hash missing.
    staged = stage(tmp_path / "none")
    (staged / "passwords.conf").unlink()
    assert nats_test(staged / "n1.conf", dummy_env()).returncode != 0
    text = PASSWORDS_EXAMPLE.read_text()
    staged = stage(tmp_path / "gap", passwords=re.sub(r"(?m)^events_hash:.*$", "", text))
    result = nats_test(staged / "n1.conf", dummy_env())
    assert result.returncode != 0 and "events_hash" in result.stderr + result.stdout


def test_every_example_password_is_refused_in_production() -> None:
    """The example env files keep plain passwords for the operator to replace; the
    hashes shipped are theirs, so each is refused by a production start."""
    for user in USERS:
        assert production.is_example(example_password(user)), user
    for user in CLIENTS:
        url = read_env(ENV_DIR / f"{user}.env.example")["VESTRY_NATS_URL"]
        assert production.nats_url_problems(url), user


def test_nodes_are_distinct_and_alike_where_they_must_be() -> None:
    nodes = {name: node(name) for name in NODES}
    for key in ("server_name", "listen", "http", "cluster.listen", "jetstream.store_dir"):
        values = [str(conf[key]) for conf in nodes.values()]
        assert len(set(values)) == 3, f"{key} repeats: {values}"
    ports = [
        host_port(str(conf[key]))[1]
        for conf in nodes.values()
        for key in ("listen", "http", "cluster.listen")
    ]
    assert len(set(ports)) == 9, f"ports collide: {ports}"
    assert [conf["server_name"] for conf in nodes.values()] == list(NODES)
    for key in (
        "cluster.name",
        "cluster.no_advertise",
        "jetstream.sync_interval",
        "include",
        "cluster.routes",
    ):
        assert len({str(conf[key]) for conf in nodes.values()}) == 1, f"{key} differs"
    assert nodes["n1"]["jetstream.sync_interval"] == "always"
    assert nodes["n1"]["include"] == "./accounts.conf"
    # Clients list every node with their credentials; a node the cluster advertised
    # would come without them (tests/integration/test_deploy_failover.py).
    assert all(conf["cluster.no_advertise"] == "true" for conf in nodes.values())


def test_each_node_routes_to_the_other_two() -> None:
    env = read_env(ENV_DIR / "nats.env.example")
    cluster_ports = {name: host_port(str(node(name)["cluster.listen"]))[1] for name in NODES}
    for name in NODES:
        routes = node(name)["cluster.routes"]
        assert isinstance(routes, list)
        urls = [env[route.removeprefix("$")] for route in routes]
        ports = {int(url.rsplit(":", 1)[1]) for url in urls}
        others = {cluster_ports[other] for other in NODES if other != name}
        assert others <= ports, f"{name} does not route to {others - ports}"
        assert ports == set(cluster_ports.values())
        for url in urls:
            assert url.startswith("nats-route://route:")
            password = url.split("route:", 2)[2].split("@")[0]
            assert password == env["VESTRY_NATS_ROUTE_PASSWORD"]


# Inboxes


def test_each_user_reads_its_own_inbox_and_nobody_elses() -> None:
    for user in USERS[:-1]:  # sys is the system account's
        subscribe = permissions(user)["subscribe"]
        assert f"_INBOX_{user}.>" in subscribe, user
        for other in USERS:
            if other != user:
                assert not may_subscribe(user, f"_INBOX_{other}.abc.1"), (user, other)
        assert not may_subscribe(user, "_INBOX.abc.1"), user  # nats-py's default inbox
        assert not any(p in (">", "*.>", "_INBOX.>") for p in subscribe), user


@pytest.mark.parametrize("user", CLIENTS)
def test_each_client_takes_its_replies_under_its_own_inbox(user: str) -> None:
    """kernel/settings.inbox_prefix: the user in VESTRY_NATS_URL gives the prefix, the one
    the services, the site, the CLI and the admin script connect with."""
    env = read_env(ENV_DIR / f"{user}.env.example")
    assert "VESTRY_NATS_INBOX_PREFIX" not in env  # derived from the URL's user
    prefix = inbox_prefix(env["VESTRY_NATS_URL"])
    assert prefix == f"_INBOX_{user}"
    assert Settings(nats_url=env["VESTRY_NATS_URL"]).inbox_prefix() == prefix
    assert may_subscribe(user, f"{prefix}.AbCdEf0123456789AbCdEf.1")
    assert inbox_prefix("nats://127.0.0.1:4222") == "_INBOX"  # vestry dev: no users


# Services


def test_every_stream_has_one_owner_that_declares_it(tmp_path: Path) -> None:
    """A consumer waits for its stream's owner: an unowned stream would be waited for forever.
    The shared streams are declared by each service that uses them: the DLQ and OPS (the
    audit, which every service records its actions in) by every service, PEOPLE (and,
    through its keyring, PERSON_KEYS) by every holder of personal data, each of which
    consumes PEOPLE."""
    assert set(HOLDERS) == set(SERVICES)
    declared = {service: [spec.name for spec in streams_of(service)] for service in SERVICES}
    for service, names in declared.items():
        assert sorted(names) == sorted([service.upper(), PEOPLE_STREAM, DLQ_STREAM, OPS_STREAM]), (
            f"{service} declares {names}"
        )
        assert PEOPLE_STREAM in consumed_streams(service, tmp_path / service)
    owners = {
        spec.name: [s for s, names in declared.items() if spec.name in names] for spec in STREAMS
    }
    assert owners.pop(DLQ_STREAM) == list(SERVICES)
    assert owners.pop(OPS_STREAM) == list(SERVICES)
    assert owners.pop(PEOPLE_STREAM) == list(SERVICES)
    assert all(len(services) == 1 for services in owners.values()), owners
    assert KEYS_STREAM not in {spec.name for spec in STREAMS}  # the keyring's own


# Another service's commands a service sends (services/notifications/documents.py).
COMMANDS_SENT = {"notifications": {ShowDocument.SUBJECT}}


def _expected(service: str, tmp_path: Path) -> dict[str, set[str]]:
    """What ``service``'s code needs, as accounts.conf must say it."""
    own = service.upper()
    facts = {s for spec in STREAMS if spec.name == own for s in spec.subjects}
    publish = facts | {f"{DLQ_PREFIX}.{service}.>", "_VESTRY.progress.*"}
    publish |= COMMANDS_SENT.get(service, set())
    # kernel/audit.py: each action it carries out, recorded in OPS through its outbox.
    publish.add(ActionRecorded.SUBJECT)
    subscribe = {f"{service}.cmd.>", f"_INBOX_{service}.>"}
    # kernel/streams.ensure_streams: its own stream, the DLQ, OPS and, for a holder of
    # personal data, PEOPLE (streams_of), created if absent.
    declared = [spec.name for spec in streams_of(service)]
    publish |= {f"$JS.API.STREAM.{a}.{s}" for s in declared for a in ("INFO", "CREATE")}
    # kernel/redrive.py: read a dead letter, remove it once it is handled.
    publish |= {f"$JS.API.STREAM.MSG.{a}.{DLQ_STREAM}" for a in ("GET", "DELETE")}
    if service in HOLDERS:
        # kernel/personal.Keyring: its stream created if absent; a key created (a
        # publish expecting an empty subject) and read; erasures heard, to drop a key
        # from the cache. No delete: erasure is the operator's.
        publish |= {f"$JS.API.STREAM.{a}.{KEYS_STREAM}" for a in ("INFO", "CREATE")}
        publish |= {f"{KEY_SUBJECT}.*", f"$JS.API.STREAM.MSG.GET.{KEYS_STREAM}"}
        subscribe.add(f"{SHREDDED_SUBJECT}.*")
    deny = set()
    everyone = durables(tmp_path / "durables")
    for stream in consumed_streams(service, tmp_path / service):
        durable = f"{service}-{stream.lower()}"
        # kernel/consumer.py: its durable (created by name, pulled, acked) ...
        publish |= {
            f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{durable}",
            f"$JS.ACK.{stream}.{durable}.>",
        }
        # ... and kernel/replay.py (replay, rebuild): the stream's last sequence and
        # short-lived consumers named replay-<service>-<random>.
        publish.add(f"$JS.API.STREAM.INFO.{stream}")
        publish |= {f"$JS.API.CONSUMER.{a}.{stream}.*" for a in ("CREATE", "INFO", "DELETE")}
        publish.add(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.*")
        deny.add(f"$JS.API.CONSUMER.DELETE.{stream}.{durable}")
        for other, (owner, on) in everyone.items():
            if on == stream and owner != service:
                deny |= {
                    f"$JS.API.CONSUMER.*.{stream}.{other}",
                    f"$JS.API.CONSUMER.*.{stream}.{other}.>",
                    f"$JS.API.CONSUMER.*.*.{stream}.{other}",
                }
    return {"publish": publish, "publish_deny": deny, "subscribe": subscribe}


@pytest.mark.parametrize("service", SERVICES)
def test_service_user_allows_exactly_what_its_code_uses(service: str, tmp_path: Path) -> None:
    have, want = permissions(service), _expected(service, tmp_path)
    for kind in ("publish", "publish_deny", "subscribe"):
        assert have[kind] == want[kind], f"{service} {kind}: {sorted(have[kind] ^ want[kind])}"
    assert "allow_responses: true" in user_block(service)
    # What that means, spelled out: its own facts and dead letters only ...
    for spec in STREAMS:
        for subject in spec.subjects:
            sample = subject.replace("*", "x").replace(">", "x.y")
            assert may_publish(service, sample) == (spec.name == service.upper()), sample
    # ... and in OPS its own records, nothing else of it
    assert may_publish(service, ActionRecorded.SUBJECT)
    for other in SERVICES:
        assert may_publish(service, f"dlq.{other}.x.y") == (other == service)
        # ... no other service's commands, to send (but the few it must) or to receive ...
        assert not may_publish(service, f"{other}.cmd.run_invoicing")
        assert may_subscribe(service, f"{other}.cmd.x") == (other == service)
    # ... person keys made and read, never erased, nor an erasure asked for or announced.
    pid = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567"
    assert may_publish(service, f"{KEY_SUBJECT}.{pid}")
    assert may_publish(service, f"$JS.API.STREAM.MSG.GET.{KEYS_STREAM}")
    assert may_subscribe(service, f"{SHREDDED_SUBJECT}.{pid}")
    assert not may_publish(service, f"$JS.API.STREAM.MSG.DELETE.{KEYS_STREAM}")
    assert not may_publish(service, f"{SHREDDED_SUBJECT}.{pid}")
    assert not may_publish(service, PersonErasureRequested.SUBJECT)


@pytest.mark.parametrize("user", USERS[:-1])
def test_nobody_updates_purges_or_deletes_a_stream_but_as_the_admin_declares(user: str) -> None:
    for spec in (*STREAMS, OPS_STREAM, KEYS_STREAM):
        name = spec if isinstance(spec, str) else spec.name
        assert may_publish(user, f"$JS.API.STREAM.UPDATE.{name}") == (
            user == "admin" and name not in (OPS_STREAM, KEYS_STREAM)
        ), (user, name)
        for action in ("PURGE", "DELETE"):
            assert not may_publish(user, f"$JS.API.STREAM.{action}.{name}"), (user, name)
        # Messages: dead letters leave the DLQ (redrive, purge) and a person's key leaves
        # PERSON_KEYS when they are erased (the operator); nothing else is deleted.
        assert may_publish(user, f"$JS.API.STREAM.MSG.DELETE.{name}") == (
            (name == DLQ_STREAM and user in (*SERVICES, "operator"))
            or (name == KEYS_STREAM and user == "operator")
        ), (user, name)
    for subject in ("$JS.API.STREAM.CREATE.X", "$JS.API.ACCOUNT.PURGE.VESTRY", "$SYS.REQ.X"):
        assert not may_publish(user, subject), (user, subject)
    assert not any(p == ">" or p.startswith("$JS.API.>") for p in permissions(user)["publish"])


@pytest.mark.parametrize("user", USERS[:-1])
def test_nobody_changes_pulls_or_deletes_a_durable_not_its_own(user: str, tmp_path: Path) -> None:
    for durable, (owner, stream) in durables(tmp_path).items():
        mine = user == owner
        for subject in (
            f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{durable}",
            f"$JS.ACK.{stream}.{durable}.1.5.5.1700000000000000000.0",
        ):
            assert may_publish(user, subject) == mine, subject
        for subject in (
            f"$JS.API.CONSUMER.CREATE.{stream}.{durable}",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}",
        ):
            assert may_publish(user, subject) == mine, subject
        for subject in (  # nobody: not the owner either
            f"$JS.API.CONSUMER.CREATE.{stream}.{durable}.events.>",
            f"$JS.API.CONSUMER.DELETE.{stream}.{durable}",
        ):
            assert not may_publish(user, subject), subject


# The public site


# The web service records staff account changes in OPS itself (it has no outbox):
# services/web/office/staff.py through kernel/audit.publish, creating OPS if absent.
WEB_RECORDS = {
    ActionRecorded.SUBJECT,
    f"$JS.API.STREAM.INFO.{OPS_STREAM}",
    f"$JS.API.STREAM.CREATE.{OPS_STREAM}",
    f"$JS.API.STREAM.MSG.GET.{OPS_STREAM}",  # the audit log page reads OPS back
}


def test_web_user_sends_only_the_commands_the_site_sends() -> None:
    """The door owns no stream: the commands its pages send, its health, the records of
    staff changes and the audit log read back, nothing else."""
    allowed = permissions("web")
    wanted = web_commands() | WEB_RECORDS
    assert allowed["publish"] == wanted, sorted(allowed["publish"] ^ wanted)
    assert {"events.cmd.book", "notifications.cmd.unsubscribe"} <= allowed["publish"]
    # ... the operator's pages: each service lists its own dead letters and takes them
    # back; the site reads no stream but OPS, and never asks for a replay or a rebuild
    for service in SERVICES:
        assert {dead_letters_subject(service), redrive_subject(service)} <= allowed["publish"]
        assert not {replay_subject(service), rebuild_subject(service)} & allowed["publish"]
    # ... and answers `vestry staff`, the operator's commands about staff accounts
    assert allowed["subscribe"] == {health_subject("web"), "web.cmd.staff_*", "_INBOX_web.>"}
    assert not allowed["publish_deny"]
    assert "allow_responses: true" in user_block("web")  # its health replies
    every = (allowed["publish"] - WEB_RECORDS) | allowed["subscribe"]
    assert not any(s.startswith("$") or s.startswith(f"{DLQ_PREFIX}.") for s in every)
    assert not any(s.endswith(">") or "*" in s for s in allowed["publish"])


# Operators and the admin


# `vestry people forget` (vestry/cli_people.py): PEOPLE and the keys' stream created if
# absent (their info: STREAM.INFO.*), the request sealed under the person's key (read
# with STREAM.MSG.GET.*, created if need be) and stored, then, once every holder has
# answered, the key deleted (secure erase) and the holders' keyrings told.
FORGET_PUBLISHES = {
    f"$JS.API.STREAM.CREATE.{PEOPLE_STREAM}",
    f"$JS.API.STREAM.CREATE.{KEYS_STREAM}",
    f"{KEY_SUBJECT}.*",
    PersonErasureRequested.SUBJECT,
    f"$JS.API.STREAM.MSG.DELETE.{KEYS_STREAM}",
    f"{SHREDDED_SUBJECT}.*",
}
# ... hearing each holder's answer, and its own keyring's notices.
FORGET_SUBSCRIBES = {fact.SUBJECT for fact in ERASED_FACTS.values()} | {f"{SHREDDED_SUBJECT}.*"}


def test_the_operator_acts_through_the_services() -> None:
    allowed = permissions("operator")
    assert allowed["publish"] == {
        *(f"{service}.cmd.>" for service in SERVICES),
        health_subject("web"),
        "web.cmd.staff_*",  # `vestry staff`
        "$JS.API.STREAM.LIST",
        "$JS.API.STREAM.INFO.*",
        "$JS.API.CONSUMER.LIST.*",
        "$JS.API.STREAM.MSG.GET.*",
        "$JS.API.STREAM.MSG.DELETE.DLQ",
        ActionRecorded.SUBJECT,  # what it does itself: purge, forget
        *FORGET_PUBLISHES,
    }, sorted(allowed["publish"])
    assert allowed["subscribe"] == {
        "_INBOX_operator.>",
        "_VESTRY.progress.*",
        *FORGET_SUBSCRIBES,
    }, sorted(allowed["subscribe"])
    assert "allow_responses" not in user_block("operator")
    assert not any(
        may_publish("operator", f"$JS.API.CONSUMER.CREATE.EVENTS.x{t}") for t in ("", ".>")
    )
    assert not may_publish("operator", f"$JS.API.STREAM.MSG.DELETE.{OPS_STREAM}")
    assert not may_publish("operator", f"$JS.API.STREAM.CREATE.{OPS_STREAM}")  # the admin's
    assert may_publish("operator", f"$JS.API.STREAM.INFO.{OPS_STREAM}")
    assert not may_publish("operator", "ops.action.forget")  # only the contract's subject
    # `vestry people`: forget as above, export through each holder's command.
    for subject in (
        f"$JS.API.STREAM.INFO.{PEOPLE_STREAM}",
        f"$JS.API.STREAM.INFO.{KEYS_STREAM}",
        f"$JS.API.STREAM.MSG.GET.{KEYS_STREAM}",
        *(command.SUBJECT for command in EXPORT_COMMANDS.values()),
    ):
        assert may_publish("operator", subject), subject
    assert set(EXPORT_COMMANDS) == set(HOLDERS) == set(ERASED_FACTS)
    # Only the request: no other subject of PEOPLE, nor a holder's answer.
    assert not may_publish("operator", "people.erasure.cancelled")
    assert not any(may_publish("operator", fact.SUBJECT) for fact in ERASED_FACTS.values())


def test_the_observer_only_looks(tmp_path: Path) -> None:
    allowed = permissions("observer")
    assert {s for s in allowed["publish"] if not s.startswith("$")} == {
        health_subject(name) for name in (*SERVICES, *DOORS)
    }
    assert allowed["subscribe"] == {"_INBOX_observer.>"}
    assert "allow_responses" not in user_block("observer")
    for subject in (
        "$JS.API.STREAM.LIST",
        "$JS.API.STREAM.NAMES",
        "$JS.API.STREAM.INFO.OPS",
        "$JS.API.STREAM.MSG.GET.DLQ",
        "$JS.API.CONSUMER.LIST.EVENTS",
        "$JS.API.CONSUMER.INFO.EVENTS.notifications-events",
        "$JS.API.CONSUMER.CREATE.EVENTS.tail-0a1b2c3d4e.events.>",
        "$JS.API.CONSUMER.MSG.NEXT.EVENTS.tail-0a1b2c3d4e",
        "$JS.API.CONSUMER.DELETE.EVENTS.tail-0a1b2c3d4e",
    ):
        assert may_publish("observer", subject), subject
    for subject in (
        "events.cmd.book",
        "subscriptions.cmd.replay",
        "ops.action.purge",
        "dlq.events.x",
        "$JS.API.STREAM.MSG.DELETE.DLQ",
        "$JS.ACK.EVENTS.tail-0a1b2c3d4e.1.1.1.1.0",
        "$JS.API.CONSUMER.CREATE.EVENTS.tail-0a1b2c3d4e",  # no filter: not a tail
        # no erasure and no export (an export is a person's data) ...
        PersonErasureRequested.SUBJECT,
        *(command.SUBJECT for command in EXPORT_COMMANDS.values()),
        f"{KEY_SUBJECT}.0a1b2c3d4e",
        f"{SHREDDED_SUBJECT}.0a1b2c3d4e",
        f"$JS.API.STREAM.MSG.DELETE.{KEYS_STREAM}",
        f"$JS.API.STREAM.CREATE.{PEOPLE_STREAM}",
        # ... and no person key read, by message or by tail: with the keys, every
        # personal field in the streams it reads would open
        f"$JS.API.STREAM.MSG.GET.{KEYS_STREAM}",
        f"$JS.API.DIRECT.GET.{KEYS_STREAM}",
        f"$JS.API.DIRECT.GET.{KEYS_STREAM}.{KEY_SUBJECT}.0a1b2c3d4e",
        f"$JS.API.CONSUMER.CREATE.{KEYS_STREAM}.tail-0a1b2c3d4e.{KEY_SUBJECT}.>",
        f"$JS.API.CONSUMER.MSG.NEXT.{KEYS_STREAM}.tail-0a1b2c3d4e",
    ):
        assert not may_publish("observer", subject), subject
    assert may_publish("observer", f"$JS.API.STREAM.INFO.{KEYS_STREAM}")  # how many, no more
    assert {d for d, _ in durables(tmp_path).items()} == {
        token for subject in allowed["publish_deny"] for token in subject.split(".") if "-" in token
    }


def test_the_admin_only_declares_streams() -> None:
    allowed = permissions("admin")
    streams = [spec.name for spec in STREAMS if not spec.append_only]
    assert allowed["publish"] == {
        *(f"$JS.API.STREAM.{a}.{s}" for s in streams for a in ("INFO", "CREATE", "UPDATE")),
        f"$JS.API.STREAM.INFO.{OPS_STREAM}",
        f"$JS.API.STREAM.CREATE.{OPS_STREAM}",
        f"$JS.API.STREAM.INFO.{KEYS_STREAM}",
        f"$JS.API.STREAM.CREATE.{KEYS_STREAM}",
    }
    assert allowed["subscribe"] == {"_INBOX_admin.>"}


def _declare_streams_script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("declare_streams", DEPLOY / "declare_streams.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_admin_declares_ops_append_only_as_the_services_do() -> None:
    ops = _declare_streams_script().ops_config(3, 600)
    assert ops.name == OPS_STREAM and ops.subjects == OPS_SUBJECTS == ["ops.action.*"]
    assert ops.deny_delete and ops.deny_purge and ops.num_replicas == 3
    [declared] = [spec for spec in streams_of("events") if spec.name == OPS_STREAM]
    assert declared.append_only
    assert ops == stream_config(declared, duplicate_window_s=600, replicas=3)
    assert ActionRecorded.SUBJECT.startswith("ops.action.")


class _Recorder:
    """Stands in for JetStream: no stream there, and the one created kept."""

    def __init__(self) -> None:
        self.created: list[StreamConfig] = []

    async def stream_info(self, name: str) -> None:
        raise NotFoundError

    async def add_stream(self, config: StreamConfig) -> None:
        self.created.append(config)


def test_the_admin_declares_the_person_keys_as_the_services_do() -> None:
    """The admin creates PERSON_KEYS with the services' own declaration and checks an
    existing one against the same configuration: one message (key) per person, in
    files, readable from any replica."""
    script = _declare_streams_script()
    recorder = _Recorder()
    asyncio.run(ensure_keys_stream(recorder, replicas=3))  # type: ignore[arg-type]
    [created] = recorder.created
    wanted = script.keys_config(3)
    assert created == wanted
    assert wanted.max_msgs_per_subject == 1 and wanted.allow_direct
    assert wanted.storage == "file" and wanted.num_replicas == 3
    assert script.keys_differences(created, wanted) == []
    changed = StreamConfig.from_response({**wanted.as_dict(), "max_msgs_per_subject": 2})
    assert script.keys_differences(changed, wanted) == ["max_msgs_per_subject"]


# The env examples and the units


@pytest.mark.parametrize("service", SERVICES)
def test_service_env_example(service: str) -> None:
    env = read_env(ENV_DIR / f"{service}.env.example")
    known = {"VESTRY_LOG_LEVEL"} | _setting_names()
    for key in env:
        assert key in known, f"{key} is no setting"
    _logs_in_as(service, env)
    assert env[f"VESTRY_{service.upper()}_DB"].startswith("postgresql+asyncpg://")
    assert Settings(
        **{k.removeprefix("VESTRY_").lower(): v for k, v in env.items() if k != "VESTRY_LOG_LEVEL"}
    )
    if service == "notifications":
        assert {"VESTRY_SMTP_HOST", "VESTRY_SMTP_PORT", "VESTRY_MAIL_FROM"} <= set(env)


def _logs_in_as(user: str, env: dict[str, str]) -> None:
    """The URL names all three nodes, as ``user`` with its example password."""
    urls = env["VESTRY_NATS_URL"].split(",")
    client_ports = {host_port(str(node(name)["listen"]))[1] for name in NODES}
    assert {int(url.rsplit(":", 1)[1]) for url in urls} == client_ports
    for url in urls:
        assert url.startswith(f"nats://{user}:{example_password(user)}@"), url


@pytest.mark.parametrize("user", (*OPERATORS, "admin"))
def test_cli_env_examples(user: str) -> None:
    env = read_env(ENV_DIR / f"{user}.env.example")
    assert set(env) <= _setting_names(), sorted(set(env) - _setting_names())
    _logs_in_as(user, env)
    assert Settings(**{k.removeprefix("VESTRY_").lower(): v for k, v in env.items()})


def test_the_person_key_secret_is_where_people_are_sealed_and_erased() -> None:
    """Every holder seals and opens with it (kernel/production checks it for each) and
    the operator's CLI erases with it: the same variable in each of their examples, as
    an example value that production refuses, and in no one else's."""
    variable = "VESTRY_PERSON_KEY_SECRET"
    assert variable in _setting_names()
    for name in (*SERVICES, *DOORS, *OPERATORS, "admin"):
        env = read_env(ENV_DIR / f"{name}.env.example")
        wanted = name in HOLDERS or name == "operator"
        assert (variable in env) == wanted, name
        if wanted:
            assert production.is_example(env[variable]), name
            assert env[variable] == Settings.model_fields["person_key_secret"].default
        if name in HOLDERS:
            assert "person_key_secret" in production.KEYS_OF[name], name


def test_web_env_example() -> None:
    env = read_env(ENV_DIR / "web.env.example")
    web_fields = {f"VESTRY_WEB_{field}".upper() for field in WebSettings.model_fields}
    read_by_web = web_fields | {
        "VESTRY_ENV",
        "VESTRY_NATS_URL",
        "VESTRY_PARTNERSHIP_NAME",
        "VESTRY_PUBLIC_URL",
        "VESTRY_LINK_SECRET",
        "VESTRY_UNSUBSCRIBE_SECRET",
        "VESTRY_STREAM_REPLICAS",  # OPS, should it create it
    }
    assert read_by_web <= _setting_names()
    # Every setting the site reads, but the port: the unit sets it per replica, and a
    # value in the EnvironmentFile would override the unit's.
    assert set(env) == read_by_web - {"VESTRY_WEB_PORT"}, sorted(set(env) ^ read_by_web)
    _logs_in_as("web", env)
    web = WebSettings(
        **{k.removeprefix("VESTRY_WEB_").lower(): v for k, v in env.items() if k in web_fields}
    )
    assert web.secure_cookies and web.host == "127.0.0.1"
    assert web.forwarded_allow_ips == "127.0.0.1"
    assert Settings(
        **{k.removeprefix("VESTRY_").lower(): v for k, v in env.items() if k not in web_fields}
    )
    # It checks the links notifications signs: the same keys in both environments.
    notifications = read_env(ENV_DIR / "notifications.env.example")
    assert {"VESTRY_LINK_SECRET", "VESTRY_UNSUBSCRIBE_SECRET"} <= set(notifications)


def _setting_names() -> set[str]:
    """Every variable a service reads: the kernel's settings and each service's own."""
    from services.events.settings import EventsSettings
    from services.subscriptions.settings import BillingSettings

    names = set()
    for model in (Settings, BillingSettings, EventsSettings, WebSettings):
        prefix = model.model_config.get("env_prefix", "")
        names |= {f"{prefix}{field}".upper() for field in model.model_fields}
    return names


def test_every_service_keeps_three_copies_of_its_streams() -> None:
    """One copy per node; the same in every service, as each one declares the DLQ, OPS
    and PEOPLE, in the web service's, which may create OPS, in the operator's, whose
    `vestry people forget` declares PEOPLE too, and in the admin's environment, which
    declares them all."""
    for name in (*SERVICES, "web", "admin", "operator"):
        env = read_env(ENV_DIR / f"{name}.env.example")
        assert env.get("VESTRY_STREAM_REPLICAS") == str(len(NODES)), name
        assert Settings(stream_replicas=env["VESTRY_STREAM_REPLICAS"]).stream_replicas == 3


def test_nats_env_example_sets_every_variable_the_configs_use(tmp_path: Path) -> None:
    env = read_env(ENV_DIR / "nats.env.example")
    used = set()
    for name in NODES:
        used |= set(re.findall(r"\$(VESTRY_\w+)", (NATS_DIR / f"{name}.conf").read_text()))
    assert used == set(env)
    assert not re.findall(r"\$(VESTRY_\w+)", (NATS_DIR / "accounts.conf").read_text())
    result = nats_test(stage(tmp_path) / "n2.conf", env)
    assert result.returncode == 0, result.stderr


HARDENING = {
    "NoNewPrivileges=true",
    "ProtectSystem=strict",
    "ProtectHome=true",
    "PrivateTmp=true",
    "PrivateDevices=true",
}


@pytest.mark.parametrize("service", (*SERVICES, *DOORS))
def test_service_unit(service: str) -> None:
    text = (SYSTEMD_DIR / f"vestry-{service}@.service").read_text()
    assert f"ExecStart=/opt/vestry/.venv/bin/python -m services.{service}\n" in text
    assert find_spec(f"services.{service}.__main__") is not None, f"no services.{service}"
    assert f"EnvironmentFile=/etc/vestry/{service}.env\n" in text
    assert (ENV_DIR / f"{service}.env.example").exists()
    assert "Restart=always\n" in text
    assert "ExecStartPre" not in text.split("[Service]")[1]
    lines = set(text.splitlines())
    assert lines >= HARDENING, sorted(HARDENING - lines)
    assert "PartOf=vestry.target\n" in text and "WantedBy=vestry.target\n" in text


def test_web_unit_gives_each_replica_its_own_port_on_loopback() -> None:
    text = (SYSTEMD_DIR / "vestry-web@.service").read_text()
    assert "Environment=VESTRY_WEB_PORT=800%i\n" in text
    assert "VESTRY_WEB_PORT" not in read_env(ENV_DIR / "web.env.example")
    assert read_env(ENV_DIR / "web.env.example")["VESTRY_WEB_HOST"] == "127.0.0.1"
    replicas = {WebSettings(port=f"800{i}").port for i in range(1, 10)}
    nats_ports = {port for name in NODES for port in _node_ports(name)}
    assert len(replicas) == 9 and not replicas & nats_ports
    # Not the vestry user: the public door cannot read the services' environment files.
    assert "User=vestry-web\n" in text and "Group=vestry-web\n" in text


def _node_ports(name: str) -> set[int]:
    return {host_port(str(node(name)[key]))[1] for key in ("listen", "http", "cluster.listen")}


def test_nats_unit() -> None:
    text = (SYSTEMD_DIR / "vestry-nats@.service").read_text()
    assert "ExecStart=/opt/vestry/.venv/bin/nats-server -c /etc/vestry/nats/%i.conf\n" in text
    assert "EnvironmentFile=/etc/vestry/nats.env\n" in text
    assert "StateDirectory=vestry/nats/%i\n" in text
    for name in NODES:  # the unit's state directory is the config's store_dir
        assert node(name)["jetstream.store_dir"] == f"/var/lib/vestry/nats/{name}"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_units_verify(tmp_path: Path) -> None:
    for unit in SYSTEMD_DIR.iterdir():
        text = unit.read_text().replace("/opt/vestry/.venv/bin/", f"{binary().parent}/")
        (tmp_path / unit.name).write_text(text)
    instances = ["vestry-nats@n1.service", "vestry.target"]
    instances += [f"vestry-{service}@1.service" for service in (*SERVICES, *DOORS)]
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *[str(tmp_path / i) for i in instances]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not output, output
