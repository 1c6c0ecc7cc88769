"""The replica-presence watch: marks the replica present once, then leaves the pipeline."""

from __future__ import annotations

from pipecat.frames.frames import OutputImageRawFrame, SpeechOutputAudioRawFrame, TextFrame
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from pipelines.avatar import AvatarConnection, ReplicaPresenceObserver


def pushed(source: FrameProcessor, frame: object) -> FramePushed:
    return FramePushed(
        source=source,
        destination=FrameProcessor(),
        frame=frame,  # type: ignore[arg-type]
        direction=FrameDirection.DOWNSTREAM,
        timestamp=0,
    )


async def test_first_replica_frame_marks_present_and_detaches_once() -> None:
    """The replica's first video frame from the avatar marks it present and the watch leaves the
    pipeline, so the rest of the session's frames cost it nothing."""
    avatar, other = FrameProcessor(), FrameProcessor()
    connection = AvatarConnection()
    observer = ReplicaPresenceObserver(connection, avatar)
    detached: list[BaseObserver] = []

    async def detach(which: BaseObserver) -> None:
        detached.append(which)

    observer.detach_with(detach)
    await observer.on_push_frame(pushed(other, OutputImageRawFrame(b"\0" * 12, (2, 2), "RGB")))
    await observer.on_push_frame(pushed(avatar, TextFrame("not media")))
    assert not connection.replica_present.is_set() and detached == []

    await observer.on_push_frame(pushed(avatar, OutputImageRawFrame(b"\0" * 12, (2, 2), "RGB")))
    audio = SpeechOutputAudioRawFrame(audio=b"\0\0" * 160, sample_rate=16000, num_channels=1)
    await observer.on_push_frame(pushed(avatar, audio))
    assert connection.replica_present.is_set()
    assert detached == [observer]
