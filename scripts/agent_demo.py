"""What propeller does with a Spark task routed to flytewasm, done with the
official flyteidl stubs: start `flytewasm serve --sandbox`, ListAgents,
CreateTask for a TaskTemplate, GetTask until it ends.

    python scripts/agent_demo.py target/debug/flytewasm target/plugins examples/spark_pi.pb
"""

import argparse
import pathlib
import sys
import time

import grpc
from flyteidl.admin import agent_pb2
from flyteidl.core import execution_pb2, tasks_pb2
from flyteidl.service.agent_pb2_grpc import AgentMetadataServiceStub, AsyncAgentServiceStub

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
import agent_support  # noqa: E402

Phase = execution_pb2.TaskExecution.Phase


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("flytewasm")
    parser.add_argument("plugins")
    parser.add_argument("template")
    args = parser.parse_args()
    template = tasks_pb2.TaskTemplate.FromString(pathlib.Path(args.template).read_bytes())

    server = agent_support.serve(args.flytewasm, args.plugins, "--sandbox", "--sandbox-step-ms", "300")
    try:
        address = server.found[agent_support.GRPC]
        print(f"flytewasm serve is listening on {address} (on the embedded sandbox, a test double)")
        channel = grpc.insecure_channel(address)
        for agent in AgentMetadataServiceStub(channel).ListAgents(agent_pb2.ListAgentsRequest()).agents:
            categories = ", ".join(f"{c.name} v{c.version}" for c in agent.supported_task_categories)
            print(f"ListAgents: {agent.name} serves {categories}")

        agent = AsyncAgentServiceStub(channel)
        execution = f"demo{int(time.time())}"
        meta = agent.CreateTask(agent_support.create_request(template, execution)).resource_meta
        print(f"CreateTask: resource_meta is {len(meta)} bytes")
        category = agent_support.category(template)
        last = None
        while True:
            resource = agent.GetTask(agent_pb2.GetTaskRequest(resource_meta=meta, task_category=category)).resource
            if resource.phase != last:
                last = resource.phase
                print(f"GetTask: {Phase.Name(resource.phase):<22} {resource.message}")
                for link in resource.log_links:
                    print(f"{'':>31}log: {link.name} {link.uri}")
            if resource.phase in (Phase.SUCCEEDED, Phase.FAILED, Phase.RETRYABLE_FAILED):
                return 0 if resource.phase == Phase.SUCCEEDED else 1
            time.sleep(0.1)
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
