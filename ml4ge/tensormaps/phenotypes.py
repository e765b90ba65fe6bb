"""Scalar phenotypes stored in HD5 files at ``/phenotypes/<name>/instance_<k>`` (tensorize writes them there).

For phenotypes kept in a table instead, build maps with :func:`from_table`.
"""

from ml4ge.readers import CsvColumn, PhenotypeColumns
from ml4ge.tensormap import Interpretation, TensorMap

GROUP = "phenotypes"

age = TensorMap("age", (1,), group=GROUP, description="age at imaging, years")
bmi = TensorMap("bmi", (1,), group=GROUP, description="body mass index, kg/m^2")
height = TensorMap("height", (1,), group=GROUP, description="standing height, cm")
brain_volume = TensorMap("brain_volume", (1,), group=GROUP, description="total brain volume, ml")
sex = TensorMap(
    "sex",
    (2,),
    interpretation=Interpretation.CATEGORICAL,
    group=GROUP,
    channel_map={"female": 0, "male": 1},
    description="sex stored as 0 (female) / 1 (male)",
)


def from_table(name: str, path: str, column: str | None = None, **fields) -> TensorMap:
    """A scalar TensorMap read from column ``column`` (default ``name``) of a CSV/TSV keyed by sample id."""
    return TensorMap(name, (1,), reader=CsvColumn(str(path), column or name), **fields)


def domain(name: str, columns, **fields) -> TensorMap:
    """A tabular domain: the phenotype ``columns`` tensorize stored (``phenotypes/<column>``) as one vector, its
    ``channel_map`` naming them (a predictor's tabular branch; its leak guard reads the names). A sample lacking
    any column lacks the domain."""
    columns = tuple(columns)
    return TensorMap(name, (len(columns),), group=GROUP, reader=PhenotypeColumns(columns),
                     channel_map={column: index for index, column in enumerate(columns)}, **fields)
