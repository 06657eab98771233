"""One module per decoder of outside bytes, each with ``test_one_input(data: bytes) -> None``: it
feeds ``data`` to the decoder and lets only the decoder's documented errors pass; anything else
escaping it (or a hang, or a huge allocation) is a finding. Importing this package imports no
product code, so the runner can instrument what a target imports."""

from __future__ import annotations

__all__ = ["TARGETS"]

# target module -> libFuzzer's -max_len for it (the longest input worth trying)
TARGETS: dict[str, int] = {
    "upload_single": 4096,
    "upload_confluent": 4096,
    "review_decision": 4096,
    "dead_letter": 4096,
    "commit_metadata": 4200,  # the broker keeps 4096 bytes of metadata by default
    "callback_body": 8192,
    "hive_answer": 8192,
    "huawei_answer": 4096,
    "policy_file": 8192,
    "settings_file": 4096,
    "index_metadata": 8192,  # a note of 1,000 characters, escaped
    "writer_schema": 8192,  # a registry's schema text and a body
}
