"""The create_work templates of the mlds app, and the physical names of its input files.

BOINC's ``create_work`` reads an input template (one ``<file_info>`` per input file, the logical
names the trainer opens) and an output template (the result file and the most the upload handler
accepts). The templates deliberately hold no ``rsc_*`` values: a value in a template overrides the
one given to ``create_work``, and every workunit's estimates differ (``workgen.bounds``).

Two input templates: a first workunit ships its spec; a follow-up also ships the previous result,
which the trainer continues from (logical names in ``boinc_app.filenames``; the follow-up's spec
names ``checkpoint.h5`` in ``resume_from``).
"""

from boinc_app.filenames import RESULT_NAME, SPEC_NAME
from workgen.plan import RESUME_NAME

DELAY_BOUND_SECONDS = 7 * 86400
# BOINC's defaults are 1 each: one crashed or invalid result would fail the workunit. A volunteer's
# result may be lost or bad; BOINC sends the work again, up to these counts (min_quorum 1: each
# result is judged alone, by the validator's re-evaluation and spot check, not by comparison).
RESULT_COUNTS = {"min_quorum": 1, "target_nresults": 1, "max_error_results": 3, "max_total_results": 5, "max_success_results": 3}


def input_template_name(app, resume):
    return f"{app}_in_resume" if resume else f"{app}_in"


def output_template_name(app):
    return f"{app}_out"


def spec_physical_name(workunit):
    return f"{workunit}.json"


def checkpoint_physical_name(workunit):
    return f"{workunit}.checkpoint.h5"


def input_template(resume):
    names = [SPEC_NAME] + ([RESUME_NAME] if resume else [])
    infos = "".join("    <file_info>\n    </file_info>\n" for _ in names)
    refs = "".join(f"        <file_ref>\n            <open_name>{name}</open_name>\n        </file_ref>\n" for name in names)
    counts = "".join(f"        <{name}>{value}</{name}>\n" for name, value in RESULT_COUNTS.items())
    return (
        f"<input_template>\n{infos}    <workunit>\n{refs}"
        f"        <delay_bound>{DELAY_BOUND_SECONDS}</delay_bound>\n{counts}"
        "    </workunit>\n</input_template>\n"
    )


def output_template(max_nbytes):
    return f"""<output_template>
    <file_info>
        <name><OUTFILE_0/></name>
        <generated_locally/>
        <upload_when_present/>
        <max_nbytes>{int(max_nbytes)}</max_nbytes>
        <url><UPLOAD_URL/></url>
    </file_info>
    <result>
        <file_ref>
            <file_name><OUTFILE_0/></file_name>
            <open_name>{RESULT_NAME}</open_name>
        </file_ref>
    </result>
</output_template>
"""
