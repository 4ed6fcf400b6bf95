"""jaxpoly: the exact geometry of piecewise-affine neural networks, in JAX."""

from __future__ import annotations

from jaxpoly.complex import Cells, Complex
from jaxpoly.convert.arrays import from_arrays, load_npz, save_npz
from jaxpoly.convert.flax import from_flax
from jaxpoly.convert.torch import from_torch
from jaxpoly.enumeration import enumerate_regions, sample_regions
from jaxpoly.errors import (
    CapacityError,
    DegenerateError,
    InvalidArgumentError,
    InvalidBoundsError,
    IncompleteResultWarning,
    InvalidNetworkError,
    JaxpolyError,
    JaxpolyWarning,
    LoadError,
    SaveError,
    ModelLoadError,
    ModelNotFoundError,
    PrecisionWarning,
    StaleCombinatoricsError,
    UnsupportedLayerError,
)
from jaxpoly.extraction import extract
from jaxpoly.geometry import (
    InradiusSystem,
    VertexSystem,
    is_stale,
    level_set_positions,
    network_from_params,
    region_inradius,
    vertex_positions,
)
from jaxpoly.mesh import Mesh
from jaxpoly.models import BUNDLED_MODELS, load_model
from jaxpoly.loading import Arch, load_network, parse_arch
from jaxpoly.regions import OutputBounds, Regions
from jaxpoly.training import ExactGeometry, refresh_if_stale
from jaxpoly import geometry
from jaxpoly.network import (
    Activation,
    AffineMaps,
    HyperplaneId,
    Network,
    Stage,
    hard_tanh,
    identity,
    leaky_relu,
    output_difference,
    piecewise_linear,
    plane_through_points,
    relu,
    relu6,
    restrict_to_line,
    restrict_to_plane,
    select_output,
    validate_network,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    # network spec
    "Network", "Stage", "Activation", "AffineMaps", "HyperplaneId",
    "relu", "leaky_relu", "identity", "hard_tanh", "relu6", "piecewise_linear",
    "validate_network", "select_output", "output_difference", "restrict_to_plane", "restrict_to_line",
    "plane_through_points",
    # edge subdivision
    "extract", "Complex", "Cells", "Mesh",
    # region enumeration
    "enumerate_regions", "sample_regions", "Regions", "OutputBounds",
    # differentiable geometry
    "geometry", "vertex_positions", "level_set_positions", "is_stale", "VertexSystem", "network_from_params",
    "ExactGeometry", "refresh_if_stale",
    "region_inradius", "InradiusSystem",
    # converters and models
    "from_arrays", "from_flax", "from_torch", "load_npz", "save_npz", "load_model", "BUNDLED_MODELS",
    "load_network", "parse_arch", "Arch", "ModelLoadError", "ModelNotFoundError",
    # errors
    "JaxpolyError", "InvalidNetworkError", "UnsupportedLayerError", "InvalidArgumentError", "InvalidBoundsError",
    "CapacityError", "DegenerateError", "StaleCombinatoricsError", "LoadError", "SaveError",
    "JaxpolyWarning", "PrecisionWarning", "IncompleteResultWarning",
]
