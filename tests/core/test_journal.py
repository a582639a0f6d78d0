import json
import subprocess
import sys

import pytest

from zdu.errors import TargetBusy
from zdu.journal import Journal
from zdu.model import UpgradeStatus
from zdu.secret import Secret


def begin(journal, target="cell-1", **extra):
    return journal.begin(
        target=target, from_version="16.5.0", to_version="16.6.0", strategy="rolling", **extra
    )


def test_second_upgrade_of_a_target_is_refused_while_one_runs(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    first = begin(journal)
    with pytest.raises(TargetBusy, match=first):
        begin(journal)
    begin(journal, target="cell-2")  # another target is free
    journal.finish(first, UpgradeStatus.SUCCEEDED)
    begin(journal)  # free again once finished


def test_lock_holds_across_processes(tmp_path):
    path = tmp_path / "j.sqlite"
    code = (
        "import sys, time; from zdu.journal import Journal; "
        f"j = Journal({str(path)!r}); "
        "print(j.begin(target='cell-1', from_version='1.0.0', to_version='1.1.0', "
        "strategy='rolling'), flush=True); time.sleep(30)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        upgrade_id = holder.stdout.readline().strip()
        with pytest.raises(TargetBusy, match="wait for it to finish"):
            begin(Journal(path))
    finally:
        holder.kill()
        holder.wait()
    # its owner died: the upgrade is interrupted, and still holds the target until resumed or rolled back
    with pytest.raises(TargetBusy, match="zdu resume"):
        begin(Journal(path))
    assert Journal(path).get(upgrade_id).status is UpgradeStatus.INTERRUPTED


def test_events_are_recorded_in_order_and_secrets_never_stored(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    upgrade_id = begin(journal, config={"probes": [{"headers": {"PRIVATE-TOKEN": Secret("glpat-s3cr3t")}}]})
    journal.record(
        upgrade_id, "rollout", "step-started", "scale v16-6-0 to 1", {"token": Secret("glpat-s3cr3t")}
    )
    journal.record(upgrade_id, "rollout", "step-finished", "scale v16-6-0 to 1")
    journal.finish(upgrade_id, UpgradeStatus.SUCCEEDED, report={"password": Secret("glpat-s3cr3t")})
    assert [e.kind for e in journal.events(upgrade_id)] == ["step-started", "step-finished"]
    record = journal.get(upgrade_id)
    assert record.config["probes"][0]["headers"]["PRIVATE-TOKEN"] == "***"
    assert "glpat-s3cr3t" not in (tmp_path / "j.sqlite").read_bytes().decode("latin-1")
    assert json.dumps(record.to_dict())
