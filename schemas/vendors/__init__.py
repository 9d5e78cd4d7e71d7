"""Wire models of the vendors' APIs (msgspec Structs), exactly as tolerant as each vendor needs.

Every model is declared ``gc=False``: decoded answers are trees of plain values that can hold no
reference cycle, and a sweep decodes hundreds of thousands of them; untracked, they never make the
cyclic garbage collector run or walk them (measured: decode + diff of 100k Tencent tasks went
from ~160k to ~260k entities/s).
"""
