"""The request cache: every finished generation kept inside the version, so a killed run
resumes without paying for the same tokens twice."""
