"""RFM: per-tenant quintile scores 1-5 and the named segments they fall into."""

from dataclasses import dataclass

# First match wins; fm is the rounded-up mean of the F and M scores.
SEGMENT_RULES: tuple[tuple[str, tuple[int, int], tuple[int, int]], ...] = (
    # name, (r_min, r_max), (fm_min, fm_max)
    ("champions", (4, 5), (4, 5)),
    ("loyal", (3, 3), (4, 5)),
    ("potential_loyalist", (4, 5), (2, 3)),
    ("new", (5, 5), (1, 1)),
    ("promising", (4, 4), (1, 1)),
    ("need_attention", (3, 3), (3, 3)),
    ("about_to_sleep", (3, 3), (1, 2)),
    ("cant_lose", (1, 2), (5, 5)),
    ("at_risk", (1, 2), (3, 4)),
    ("hibernating", (2, 2), (1, 2)),
    ("lost", (1, 1), (1, 2)),
)
SEGMENTS = tuple(name for name, _, _ in SEGMENT_RULES)


@dataclass(frozen=True, slots=True)
class RfmScore:
    r: int
    f: int
    m: int

    @property
    def fm(self) -> int:
        return (self.f + self.m + 1) // 2

    @property
    def segment(self) -> str:
        return segment_of(self.r, self.f, self.m)


def segment_of(r: int, f: int, m: int) -> str:
    """The named segment of an (R, F, M) cell."""
    fm = (f + m + 1) // 2
    for name, (r_lo, r_hi), (fm_lo, fm_hi) in SEGMENT_RULES:
        if r_lo <= r <= r_hi and fm_lo <= fm <= fm_hi:
            return name
    raise AssertionError(f"RFM table has a hole at r={r} fm={fm}")


def segment_case_sql(r: str, f: str, m: str) -> str:
    """The same table as a SQL CASE over score columns (used by the set-based recompute)."""
    fm = f"(({f} + {m} + 1) / 2)"
    arms = " ".join(
        f"WHEN {r} BETWEEN {r_lo} AND {r_hi} AND {fm} BETWEEN {fm_lo} AND {fm_hi} THEN '{name}'"
        for name, (r_lo, r_hi), (fm_lo, fm_hi) in SEGMENT_RULES
    )
    return f"CASE {arms} END"
