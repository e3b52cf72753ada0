"""Placement: assign fused units to processors, minimising predicted latency or the slowest pipeline stage."""

from ragc.placement.build import build_problem
from ragc.placement.problem import HOST, Edge, Placement, PlacementProblem, TransferFn, Unit
from ragc.placement.simulate import simulate
from ragc.placement.solve import OBJECTIVES, SOLVERS, solve

__all__ = [
    "HOST",
    "OBJECTIVES",
    "SOLVERS",
    "Edge",
    "Placement",
    "PlacementProblem",
    "TransferFn",
    "Unit",
    "build_problem",
    "simulate",
    "solve",
]
