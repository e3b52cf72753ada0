"""The bundle the compiler writes: its static schedule, the files on disk, the predicted-timeline picture."""
