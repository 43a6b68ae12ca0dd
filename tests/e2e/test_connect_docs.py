"""docs/connect.md, followed literally (finding 1 of issue 19): a new producer made and
authorised by ``eventguard setup local --producer`` runs the Python (aio-pika) and Node
(amqplib) examples taken from the Markdown, and each prints the worker's reply."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from common.config import Settings
from eventguard.setup_local import Plan, parse_producer, setup_local
from tests.e2e.onboarding import MANAGEMENT, ROOT, code_block, fresh_vhost, ready, run

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.smoke]

DOC = (ROOT / "docs" / "connect.md").read_text()
NODE_MODULES = ROOT / ".cache" / "node" / "node_modules"  # scripts/node-deps.sh installs it


def _check(line: str, label: str) -> None:
    """The example's one line: the reply type, the scan id, the status and the reason."""
    reply_type, scan_id, status, reason = line.strip().split(" ", 3)
    assert reply_type == "opportunity.scan.completed", label
    assert len(scan_id) == 32, label
    assert (status, reason) == ("refused", "unknown user 'alice': owns no strategy"), label


def test_the_docs_name_what_a_producer_needs() -> None:
    """The page documents user_id, the producer setting, the user's permissions, direct
    reply-to and the scan id, and links the actor page."""
    for needed in (
        "`user_id`",
        "EVENTGUARD_SECURITY__PRODUCERS",
        "rabbitmqctl add_user",
        "amq.rabbitmq.reply-to",
        "`correlation_id`",
        "content_type",
        "The scan id of an `opportunity.scan.requested` is its event `id`",
        "(actors.md)",
    ):
        assert needed in DOC, needed


async def test_both_examples_get_the_answer(
    tmp_path: Path, rabbit_url: str, redis_url: str
) -> None:
    """Python and Node examples, as written in the page, publish as `billing` and print the
    opportunity worker's reply."""
    async with fresh_vhost(tmp_path, rabbit_url, redis_url, label="connect") as setup:
        # The page's `eventguard setup local ... --producer billing=...`, in this process (a
        # second interpreter would spend seconds importing); the README test runs the command.
        await setup_local(
            Plan(
                vhost=setup.vhost,
                amqp=setup.args[setup.args.index("--amqp") + 1],
                redis_url=redis_url,
                ops_base_port=setup.ops_base_port,
                management_url=MANAGEMENT,
                producers=dict([parse_producer("billing=opportunity.scan.requested")]),
                out=tmp_path / ".eventguard",
            ),
            admin_user="guest",
            admin_password="guest",  # RabbitMQ's local default  # pragma: allowlist secret
            settings=Settings(),
        )
        eventguard = [sys.executable, "-m", "eventguard.cli"]
        worker = setup.env("opportunity_discovery")
        setup.start([*eventguard, "run", "opportunity_discovery"], env=worker, log="worker.log")
        assert await ready(int(worker["EVENTGUARD_OPS_PORT"]))
        producer = setup.env("billing")
        producer |= {"AMQP_URL": producer["EVENTGUARD_BROKER_URL"], "PRODUCER": "billing"}

        (tmp_path / "connect_aio_pika.py").write_text(
            code_block(DOC, after="<!-- example: python -->")
        )
        out = await run([sys.executable, "connect_aio_pika.py"], env=producer, cwd=tmp_path)
        _check(out, "python")

        if not (NODE_MODULES / "amqplib").is_dir():
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail("CI=true and amqplib is not installed (bash scripts/node-deps.sh)")
            pytest.skip("E2E SKIPPED: amqplib not installed (bash scripts/node-deps.sh)")
        (tmp_path / "connect_amqplib.js").write_text(
            code_block(DOC, after="<!-- example: node -->")
        )
        out = await run(
            ["node", "connect_amqplib.js"],
            env={**producer, "NODE_PATH": str(NODE_MODULES)},
            cwd=tmp_path,
        )
        _check(out, "node")
