"""Which spellings of a delivered value are the same value: decided once, here.

data.gov.sg's files differ in small ways over the years: spaces around or inside values,
letter case, ``MULTI GENERATION`` for ``MULTI-GENERATION``, flat models in upper case in the
1990s (``NEW GENERATION``) and in title case since (``New Generation``). Those spellings are
*normalised*: staging cleans them, and the gate (:mod:`hdb_elt.validation`) checks values
cleaned the same way, so it never quarantines a spelling staging was written to accept.
Anything else that fails a rule is an *error* and is quarantined or blocks. The month is never
normalised: the window, the view of the latest deliveries and the per-month runs key on it
exactly as delivered (``YYYY-MM``).

SQL cannot import Python: ``stg_hdb__resale_flat_prices.sql`` (and ``bench/floor.py``) carry
a copy of these rules, and ``tests/test_normalisation.py`` feeds every spelling of
:data:`NORMALISED_SPELLINGS` through both the gate and staging to keep them equal. The flat
model spellings are no copy: staging joins the seeds ``flat_models.csv`` and
``flat_model_spellings.csv`` and this module reads them (:mod:`hdb_elt.seeds`).
"""

from __future__ import annotations

import pandas as pd

from hdb_elt.seeds import flat_model_spellings

# Surrounding spaces dropped, runs of spaces made one, upper case.
SPACED_UPPER_COLUMNS = ("town", "flat_type", "street_name", "storey_range")
# Surrounding spaces dropped, upper case ("308b" is block 308B).
UPPER_COLUMNS = ("block",)
# Surrounding spaces dropped (numbers are parsed after that).
TRIMMED_COLUMNS = ("floor_area_sqm", "resale_price", "lease_commence_date")
# Surrounding spaces dropped, runs of spaces made one, lower case ("55 Years 05 Months").
SPACED_LOWER_COLUMNS = ("remaining_lease",)
# Other names of a flat type, after the spaces and case above.
FLAT_TYPE_SPELLINGS = {"MULTI GENERATION": "MULTI-GENERATION"}
# Surrounding spaces dropped, runs of spaces made one, then today's spelling of the model
# whatever its case (seeds/flat_models.csv) or for another spelling the seeds know
# (seeds/flat_model_spellings.csv); a model the seeds lack keeps its own spelling.
HARMONISED_COLUMNS = ("flat_model",)

# Every normalised spelling the project accepts, as (column, delivered, what staging makes
# of it): the examples tests/test_normalisation.py runs through the gate and through dbt.
NORMALISED_SPELLINGS = (
    ("town", "  ang mo  kio ", "ANG MO KIO"),
    ("flat_type", " 4  room ", "4 ROOM"),
    ("flat_type", "MULTI GENERATION", "MULTI-GENERATION"),
    ("flat_type", "multi-generation", "MULTI-GENERATION"),
    ("block", " 308b ", "308B"),
    ("street_name", "ang mo kio  ave 1", "ANG MO KIO AVE 1"),
    ("storey_range", " 10  to 12 ", "10 TO 12"),
    ("flat_model", "model  a", "Model A"),
    ("flat_model", "NEW GENERATION", "New Generation"),  # the 1990s file: upper case
    ("flat_model", "2-ROOM", "2-room"),
    ("flat_model", "MULTI GENERATION", "Multi Generation"),
    ("flat_model", "3Gen", "3Gen"),
    ("flat_model", "Loft  Villa", "Loft Villa"),  # a model the seed lacks: its own spelling
    ("floor_area_sqm", " 92 ", "92.00"),
    ("floor_area_sqm", "92.0", "92.00"),
    ("resale_price", "560888.00", "560888.00"),
    ("lease_commence_date", " 2012 ", "2012"),
    ("remaining_lease", "88 Years 04 Months", "1060"),
    ("remaining_lease", "88 years", "1056"),
    ("remaining_lease", "88 years 01 month", "1057"),
)


def _spaced(values: pd.Series) -> pd.Series:
    # Spaces only, as SQL's trim: a tab or a control character is not a spelling but an error.
    return values.str.strip(" ").str.replace(r" {2,}", " ", regex=True)


def normalise(text: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``text`` (raw rows as strings, missing values as ``""``) with every
    normalised spelling made the one spelling; other columns are left as they are."""
    clean = text.copy()
    for column in SPACED_UPPER_COLUMNS:
        clean[column] = _spaced(text[column]).str.upper()
    for column in UPPER_COLUMNS:
        clean[column] = text[column].str.strip(" ").str.upper()
    for column in TRIMMED_COLUMNS:
        clean[column] = text[column].str.strip(" ")
    for column in SPACED_LOWER_COLUMNS:
        clean[column] = _spaced(text[column]).str.lower()
    clean["flat_type"] = clean["flat_type"].replace(FLAT_TYPE_SPELLINGS)
    for column in HARMONISED_COLUMNS:
        clean[column] = harmonise_flat_model(text[column])
    return clean


def harmonise_flat_model(values: pd.Series) -> pd.Series:
    """Flat models as staging writes them: today's spelling of every spelling the seeds know
    (flat_models.csv whatever the case, flat_model_spellings.csv), else the delivered one with
    its spaces normalised."""
    spaced = _spaced(values)
    return spaced.str.upper().map(flat_model_spellings()).fillna(spaced)
