"""Print the first syntax error of the Python files named, as Python shows it
(file:line:column, the line, a caret), and exit with 1; exit with 0 if they
all compile. Used after componentize-py failed (`graflow-host build`,
scripts/build-task.sh), whose own output is a Rust backtrace."""
import sys
for path in sys.argv[1:]:
    try:
        with open(path, 'rb') as f:
            compile(f.read(), path, 'exec', dont_inherit=True)
    except SyntaxError as e:
        line = (e.text or '').rstrip('\r\n')
        print(f"{e.filename}:{e.lineno}:{e.offset or 0}: {type(e).__name__}: {e.msg}")
        if line.strip():
            print('    ' + line)
            if e.offset:
                print('    ' + ' ' * (e.offset - 1) + '^')
        sys.exit(1)
    except (ValueError, OSError):
        pass
