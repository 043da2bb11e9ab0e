"""Types shared by the code that runs inside a served call."""

from __future__ import annotations

from typing import Any

import grpc

Context = grpc.aio.ServicerContext[Any, Any]
"""The servicer context of an asyncio server call."""
