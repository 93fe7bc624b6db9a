"""The node process: the tree of DESIGN §4 around the runs (work in progress)."""

from runtime.node.errors import AdmissionRejected, NodeClosed, NodeError, NodeStartFailed

__all__ = ["AdmissionRejected", "NodeClosed", "NodeError", "NodeStartFailed"]
