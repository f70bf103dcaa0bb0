"""The model code before issue 10 (build_stream + run_records + _Observer), kept only for the differential test; deleted once it passed."""
