"""Quality-check a folder of slides on a SLURM cluster with dask-jobqueue (``pip install dask-jobqueue``).

The command line does the same with ``slideiqa batch SCANS -o QC --cluster slurm --settings lab.toml``
(job settings in the file's ``[cluster]`` table); this is the Python API's way, for a pipeline that
already has its cluster.

The slides and the output folder must be on a filesystem every compute node sees. Each job runs 8
single-threaded worker processes; slideiqa sends blocks of tiles of several slides at once to them.
Adjust the queue, account, memory and walltime to your site (``PBSCluster`` works the same way).

    python examples/batch_on_slurm.py /shared/scans /shared/qc
"""

import sys

from dask_jobqueue import SLURMCluster
from distributed import Client

from slideiqa.batch.run import run_batch


def main(scans: str, out: str) -> int:
    cluster = SLURMCluster(
        cores=8, processes=8, memory="32GB", walltime="04:00:00", job_extra_directives=["--job-name=slideiqa"]
    )
    cluster.scale(jobs=10)
    with Client(cluster) as client:
        print("dashboard:", client.dashboard_link)
        result = run_batch(
            [scans],
            out,
            recursive=True,
            client=client,
            inference_threads=1,
            on_slide=lambda record: print(record.status, record.slide, record.verdict or record.error),
        )
    cluster.close()
    print(f"{len(result.records) - len(result.failed)} of {len(result.records)} slides mapped; report in {out}")
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
