/** The job's version, reported by `version` and in logs. */
export const VERSION = "0.1.0";
