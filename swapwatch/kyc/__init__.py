"""KYC sessions' library: injection signals, active challenges and their compliance.

Against a video injected in place of the camera, each signal reports a `SignalReading`
(`readings`), and `combination.assess_injection` turns them into pass / retry / fail by one
rule: no single signal fails a session. The signals: the camera's label and capabilities
(`camera_label`), requested against delivered formats (`capture_format`), the frame clock
(`frame_clock`), duplicated frames (`duplicates`), sensor noise (`sensor_noise`) and replayed
sessions (`fingerprint`, `replay_store`); `stream_signals.StreamSignals` feeds the per-frame
ones as frames arrive, on a session or a plain stream.

Against a swap shown to the camera, `challenges` draws an unpredictable sequence of prompts and
`compliance` measures, frame by frame, whether the person followed each one, from the head
pose in degrees (`pose`) and the face track.
"""
