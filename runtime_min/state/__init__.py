"""Plan inputs kept between runs (`Plan.keep_state`): a KV cache or a recurrent state, updated in place where its
partition's processor can, else held in host memory."""

from runtime_min.state.kept import KeptState

__all__ = ["KeptState"]
