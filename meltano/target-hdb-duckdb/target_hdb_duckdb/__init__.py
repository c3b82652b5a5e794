"""Singer target of the HDB resale workbook (see target.py)."""
