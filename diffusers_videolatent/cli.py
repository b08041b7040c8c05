# PLACEHOLDER: replaced by the pipeline work in progress.
def main(argv=None) -> int:
    return 0
