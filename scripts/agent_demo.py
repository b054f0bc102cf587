"""What Flyte's propeller (Flyte 1, agent protocol) and Flyte 2's executor
(connector protocol) do with a Spark task routed to flytewasm, done with the
official flyteidl and flyteidl2 stubs: start `flytewasm serve --sandbox`,
list the plugins, CreateTask for a TaskTemplate, GetTask until it ends;
once per protocol, on the same port.

    python scripts/agent_demo.py target/debug/flytewasm target/plugins examples/spark_pi.pb \
        [--flyte2 examples/flyte2/spark_pi.pb]

With --flyte2, the Flyte 2 leg runs that task (written with Flyte 2's SDK)
instead of the flytekit one.
"""

import argparse
import pathlib
import sys
import time

import grpc
from flyteidl.admin import agent_pb2
from flyteidl.core import execution_pb2, tasks_pb2
from flyteidl.service.agent_pb2_grpc import AgentMetadataServiceStub, AsyncAgentServiceStub
from flyteidl2.connector import connector_pb2
from flyteidl2.connector.service_pb2_grpc import AsyncConnectorServiceStub, ConnectorMetadataServiceStub
from flyteidl2.core import tasks_pb2 as v2_tasks

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
import agent_support  # noqa: E402
import connector_support  # noqa: E402

Phase = execution_pb2.TaskExecution.Phase


def flyte1(channel, template, execution):
    """Flyte 1's propeller: flyteidl.service.AsyncAgentService."""
    for agent in AgentMetadataServiceStub(channel).ListAgents(agent_pb2.ListAgentsRequest()).agents:
        categories = ", ".join(f"{c.name} v{c.version}" for c in agent.supported_task_categories)
        print(f"ListAgents: {agent.name} serves {categories}")
    agent = AsyncAgentServiceStub(channel)
    meta = agent.CreateTask(agent_support.create_request(template, execution)).resource_meta
    request = agent_pb2.GetTaskRequest(resource_meta=meta, task_category=agent_support.category(template))
    return meta, lambda: agent.GetTask(request).resource


def flyte2(channel, template, execution):
    """Flyte 2's executor: flyteidl2.connector.AsyncConnectorService."""
    listed = ConnectorMetadataServiceStub(channel).ListConnectors(connector_pb2.ListConnectorsRequest())
    print("ListConnectors: " + ", ".join(c.name for c in listed.connectors))
    connector = AsyncConnectorServiceStub(channel)
    if not isinstance(template, v2_tasks.TaskTemplate):
        template = connector_support.v2_template(template)
    meta = connector.CreateTask(connector_support.create_request(template, execution)).resource_meta
    request = connector_pb2.GetTaskRequest(resource_meta=meta, task_category=connector_support.category(template))
    return meta, lambda: connector.GetTask(request).resource


def follow(get):
    """GetTask until the task ends, printing each new phase: whether it succeeded."""
    last = None
    while True:
        resource = get()
        if resource.phase != last:
            last = resource.phase
            print(f"GetTask: {Phase.Name(resource.phase):<22} {resource.message}")
            for link in resource.log_links:
                print(f"{'':>31}log: {link.name} {link.uri}")
        if resource.phase in (Phase.SUCCEEDED, Phase.FAILED, Phase.RETRYABLE_FAILED):
            return resource.phase == Phase.SUCCEEDED
        time.sleep(0.1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("flytewasm")
    parser.add_argument("plugins")
    parser.add_argument("template")
    parser.add_argument("--flyte2", help="a Flyte 2 SDK TaskTemplate for the connector leg")
    args = parser.parse_args()
    template = tasks_pb2.TaskTemplate.FromString(pathlib.Path(args.template).read_bytes())
    templates = {flyte1: template, flyte2: template}
    if args.flyte2:
        templates[flyte2] = v2_tasks.TaskTemplate.FromString(pathlib.Path(args.flyte2).read_bytes())

    server = agent_support.serve(args.flytewasm, args.plugins, "--sandbox", "--sandbox-step-ms", "300")
    try:
        address = server.found[agent_support.GRPC]
        print(f"flytewasm serve is listening on {address} (on the embedded sandbox, a test double)")
        channel = grpc.insecure_channel(address)
        ok = True
        for title, protocol in (
            ("Flyte 1 (propeller's agent-service / connector-service)", flyte1),
            ("Flyte 2 (the executor's connector-service)", flyte2),
        ):
            task = templates[protocol]
            print(f"-- {title}: task {task.id.name}")
            execution = f"demo{protocol.__name__}{int(time.time())}"
            meta, get = protocol(channel, task, execution)
            print(f"CreateTask: resource_meta is {len(meta)} bytes")
            ok = follow(get) and ok
        return 0 if ok else 1
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
