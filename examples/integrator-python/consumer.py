#!/usr/bin/env python3
"""An integrator's consumer of the mPOS Platform's events, in Python.

It follows one service's JetStream stream on NATS and decodes every event with nothing but
the platform's .proto files: they are compiled at start (grpcio-tools' protoc) into a
descriptor set, and each message is decoded by the type its envelope names. One JSON line is
printed per event: the envelope's fields, the payload in the proto3 JSON mapping, and the
payload re-encoded (hex), which equals the bytes on the wire when every field was understood.

    pip install nats-py==2.9.0 protobuf==5.29.3 grpcio-tools==1.71.0
    python consumer.py --nats nats://127.0.0.1:4222 --namespace prod --service routing \
        --tenant acme --count 10

The stream is read from its start by an ordered consumer (ephemeral: nothing is left on the
server). Filters: --tenant, --aggregate-type (the subject layout of docs/bus.md).
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile

import grpc_tools
import nats
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory


def load_messages(proto_dir):
    """Compiles every .proto file under proto_dir; a function from type name to class."""
    files = sorted(
        os.path.relpath(os.path.join(root, name), proto_dir)
        for root, _, names in os.walk(proto_dir)
        for name in names
        if name.endswith(".proto")
    )
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    with tempfile.TemporaryDirectory() as scratch:
        out = os.path.join(scratch, "descriptors.binpb")
        subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_dir}", f"-I{well_known}",
             "--include_imports", f"--descriptor_set_out={out}", *files],
            check=True,
        )
        with open(out, "rb") as handle:
            descriptors = descriptor_pb2.FileDescriptorSet.FromString(handle.read())
    pool = descriptor_pool.DescriptorPool()
    for file in descriptors.file:
        pool.Add(file)

    def message_class(name):
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))

    return message_class


def token(value):
    """A subject token as the platform writes it (docs/bus.md)."""
    if not value:
        return "_"
    return "".join("_" if c in ".*> \t\r\n" else c for c in value)


def subject(namespace, service, tenant, aggregate_type):
    prefix = f"{namespace}." if namespace else ""
    tenant_token = token(tenant) if tenant is not None else "*"
    if tenant == "":
        tenant_token = "_platform"
    kind = token(aggregate_type) if aggregate_type else "*"
    return f"{prefix}mpos.events.{service}.{tenant_token}.{kind}.*"


async def consume(args, message_class):
    envelope_class = message_class("mpos.common.v1.EventEnvelope")
    client = await nats.connect(args.nats)
    stream = f"{args.namespace.upper()}_" if args.namespace else ""
    stream += "MPOS_EVENTS_" + args.service.upper().replace("-", "_")
    js = client.jetstream()
    subscription = await js.subscribe(
        subject(args.namespace, args.service, args.tenant, args.aggregate_type),
        stream=stream,
        ordered_consumer=True,
    )
    try:
        for _ in range(args.count):
            message = await subscription.next_msg(timeout=args.timeout)
            envelope = envelope_class.FromString(message.data)
            line = json_format.MessageToDict(envelope, preserving_proto_field_name=True)
            line.pop("payload", None)
            try:
                payload = message_class(envelope.event_type).FromString(envelope.payload)
                line["payload"] = json_format.MessageToDict(payload)
                line["payload_reencoded"] = payload.SerializeToString(deterministic=True).hex()
            except KeyError:
                line["payload_error"] = f"unknown event type {envelope.event_type}"
            print(json.dumps(line, sort_keys=True), flush=True)
    finally:
        await subscription.unsubscribe()
        await client.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--namespace", default="", help="the namespace of the platform's bus URL")
    parser.add_argument("--service", required=True)
    parser.add_argument("--tenant", help="only this tenant's events")
    parser.add_argument("--aggregate-type", help="only events of this aggregate type")
    parser.add_argument("--count", type=int, required=True, help="stop after this many events")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each")
    parser.add_argument(
        "--proto", default=os.path.join(os.path.dirname(__file__), "..", "..", "proto"),
        help="the directory of the platform's .proto files",
    )
    args = parser.parse_args()
    asyncio.run(consume(args, load_messages(os.path.abspath(args.proto))))


if __name__ == "__main__":
    main()
