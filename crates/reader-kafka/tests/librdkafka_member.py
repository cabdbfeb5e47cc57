"""A librdkafka (confluent-kafka) member of a consumer group, driven by the interop test.

Prints one JSON object per line on stdout:
  {"assigned": [partitions]}      after every assignment
  {"revoked": [partitions]}       before every revocation
  {"record": [partition, offset]} for every record consumed (committed synchronously per batch)
  {"committed": {partition: offset}} answer to the "committed" command (-1001: none)
  {"closed": true}                after the "stop" command: committed, left the group
Reads commands on stdin: "committed", "stop".
"""
import argparse
import json
import queue
import sys
import threading

from confluent_kafka import Consumer, TopicPartition


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--partitions", type=int, required=True)
    args = ap.parse_args()

    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "client.id": "librdkafka-interop",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
        "partition.assignment.strategy": "range,roundrobin",
        "broker.address.family": "v4",
    })

    def on_assign(c, parts):
        out({"assigned": sorted(p.partition for p in parts)})

    def on_revoke(c, parts):
        try:
            c.commit(asynchronous=False)
        except Exception:  # nothing to commit, or the generation moved on
            pass
        out({"revoked": sorted(p.partition for p in parts)})

    consumer.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke)

    commands = queue.Queue()

    def stdin_reader():
        for line in sys.stdin:
            commands.put(line.strip())
        commands.put("stop")

    threading.Thread(target=stdin_reader, daemon=True).start()

    while True:
        try:
            cmd = commands.get_nowait()
        except queue.Empty:
            cmd = None
        if cmd == "stop":
            try:
                consumer.commit(asynchronous=False)
            except Exception:
                pass
            consumer.close()
            out({"closed": True})
            return
        if cmd == "committed":
            tps = [TopicPartition(args.topic, p) for p in range(args.partitions)]
            got = consumer.committed(tps, timeout=10)
            out({"committed": {str(tp.partition): tp.offset for tp in got}})
        msgs = consumer.consume(num_messages=200, timeout=0.2)
        seen = False
        for m in msgs:
            if m.error():
                sys.stderr.write("consume error: %s\n" % m.error())
                continue
            out({"record": [m.partition(), m.offset()]})
            seen = True
        if seen:
            consumer.commit(asynchronous=False)


if __name__ == "__main__":
    main()
