#!/usr/bin/python3
"""Runs one pod through containerd's CRI API the way a kubelet does with a RuntimeClass.

usage: cri_pod.py SOCKET HANDLER IMAGE WORKDIR [ANNOTATION=VALUE...]

RunPodSandbox (host network, runtime_handler=HANDLER) -> CreateContainer (IMAGE, a shell
command printing what the container sees) -> StartContainer -> ContainerStatus until it
exits (60 s deadline) -> read its log -> StopPodSandbox -> RemovePodSandbox. Prints one
JSON object: the handler, the sandbox and container ids, the exit code, the log lines and
each step's time in ms. Exits 1 with the failing step on error.

The client is generated at run time from the vendored api.proto with protoc (Debian's
protobuf-compiler) into WORKDIR; the gRPC calls are made through grpcio's channel
directly, so no grpc protoc plugin is needed.
"""
import json
import os
import subprocess
import sys
import time

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
SERVICE = "/runtime.v1.RuntimeService/"


def load_api(workdir):
    out = os.path.join(workdir, "cri_gen")
    os.makedirs(out, exist_ok=True)
    if not os.path.exists(os.path.join(out, "api_pb2.py")):
        # Debian 12's protoc (3.21) predates the `debug_redact` field option (it marks
        # credentials for log redaction and does not change the wire format): drop it.
        with open(os.path.join(HERE, "api.proto")) as f:
            proto = f.read().replace(" [debug_redact = true]", "")
        with open(os.path.join(out, "api.proto"), "w") as f:
            f.write(proto)
        subprocess.run(["protoc", "-I", out, "--python_out", out, "api.proto"], check=True)
    sys.path.insert(0, out)
    import api_pb2  # noqa: E402 (generated above)
    return api_pb2


class Runtime:
    def __init__(self, socket, api):
        self.api = api
        self.channel = grpc.insecure_channel("unix://" + socket)

    def call(self, method, request, response_type, timeout=120):
        stub = self.channel.unary_unary(
            SERVICE + method,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_type.FromString,
        )
        return stub(request, timeout=timeout)


def main():
    if len(sys.argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    socket, handler, image, workdir = sys.argv[1:5]
    annotations = dict(a.split("=", 1) for a in sys.argv[5:])
    api = load_api(workdir)
    rt = Runtime(socket, api)
    times = {}
    step = "Version"

    def timed(name, method, request, response_type):
        nonlocal step
        step = name
        t0 = time.monotonic()
        r = rt.call(method, request, response_type)
        times[name] = round((time.monotonic() - t0) * 1000)
        return r

    try:
        timed("Version", "Version", api.VersionRequest(), api.VersionResponse)
        logdir = os.path.join(workdir, "pod-logs")
        os.makedirs(logdir, exist_ok=True)
        uid = "uid-%d" % os.getpid()
        sandbox_config = api.PodSandboxConfig(
            metadata=api.PodSandboxMetadata(name="hull-pod", uid=uid, namespace="default"),
            log_directory=logdir,
            annotations=annotations,
            linux=api.LinuxPodSandboxConfig(
                security_context=api.LinuxSandboxSecurityContext(
                    namespace_options=api.NamespaceOption(network=api.NODE)
                )
            ),
        )
        sandbox = timed(
            "RunPodSandbox",
            "RunPodSandbox",
            api.RunPodSandboxRequest(config=sandbox_config, runtime_handler=handler),
            api.RunPodSandboxResponse,
        ).pod_sandbox_id
        container_config = api.ContainerConfig(
            metadata=api.ContainerMetadata(name="app"),
            image=api.ImageSpec(image=image),
            command=["sh", "-c", "echo hello-from-cri; uname -r; cat /proc/1/cmdline | tr '\\0' ' '; echo; exit 3"],
            log_path="app.log",
            annotations=annotations,
        )
        container = timed(
            "CreateContainer",
            "CreateContainer",
            api.CreateContainerRequest(
                pod_sandbox_id=sandbox, config=container_config, sandbox_config=sandbox_config
            ),
            api.CreateContainerResponse,
        ).container_id
        timed(
            "StartContainer",
            "StartContainer",
            api.StartContainerRequest(container_id=container),
            api.StartContainerResponse,
        )
        step = "ContainerStatus"
        deadline = time.monotonic() + 60
        while True:
            status = rt.call(
                "ContainerStatus",
                api.ContainerStatusRequest(container_id=container),
                api.ContainerStatusResponse,
            ).status
            if status.state == api.CONTAINER_EXITED:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("container did not exit within 60 s: %s" % status)
            time.sleep(0.05)
        with open(os.path.join(logdir, "app.log")) as f:
            # CRI log format: TIME STREAM TAG MESSAGE
            log = [line.rstrip("\n").split(" ", 3)[3] for line in f if line.count(" ") >= 3]
        sandbox_status = rt.call(
            "PodSandboxStatus",
            api.PodSandboxStatusRequest(pod_sandbox_id=sandbox),
            api.PodSandboxStatusResponse,
        ).status
        timed("RemoveContainer", "RemoveContainer",
              api.RemoveContainerRequest(container_id=container), api.RemoveContainerResponse)
        timed("StopPodSandbox", "StopPodSandbox",
              api.StopPodSandboxRequest(pod_sandbox_id=sandbox), api.StopPodSandboxResponse)
        timed("RemovePodSandbox", "RemovePodSandbox",
              api.RemovePodSandboxRequest(pod_sandbox_id=sandbox), api.RemovePodSandboxResponse)
        print(json.dumps({
            "handler": handler,
            "sandbox": sandbox,
            "sandbox_runtime_handler": sandbox_status.runtime_handler,
            "container": container,
            "exit_code": status.exit_code,
            "reason": status.reason,
            "log": log,
            "ms": times,
        }))
        return 0
    except Exception as e:  # report the step, not a traceback
        print("cri_pod: %s failed: %s" % (step, e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
