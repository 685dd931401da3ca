"""Reading forms: formats (what a field's digits mean: amounts, dates, patterns, checksums) and template (FORM.json:
where the fields are on a page, aligning it, reading and checking each field, flagging it for review)."""
